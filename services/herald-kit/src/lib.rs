//! Herald's I/O plumbing, shared by the producer, the consumers and the operator: the HTTP edge
//! (serving an API and its metrics listener, limits, operational routes, JSON errors), Kafka
//! client configuration, telemetry and shutdown. The values they carry are `herald-model`'s;
//! who may call, `herald-auth`'s.

pub mod http;
pub mod kafka;
pub mod shutdown;
pub mod telemetry;

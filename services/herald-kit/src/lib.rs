//! What Herald's producer and consumer share: the notification model and its Kafka codec,
//! Kafka client configuration, telemetry, shutdown and HTTP plumbing.

pub mod auth;
pub mod config;
pub mod http;
pub mod kafka;
pub mod model;
pub mod partition;
pub mod shutdown;
pub mod telemetry;
pub mod user_id;

//! The operator's Kafka I/O, apart from the pure build steps: topics read and created with the
//! Admin API ([`admin`]), the background lag prober ([`prober`]) and the Kafka-protocol client it
//! reads committed offsets and log ends with ([`protocol`]); what a lag reading is ([`lag`]);
//! and why any of it failed ([`error`]).

pub mod admin;
pub mod error;
pub mod lag;
pub mod prober;
pub mod protocol;

//! Herald's control plane: reconciles `NotificationPipeline`s into producer and consumer
//! Deployments, Services and the topic.
//!
//! - [`desired`]: the children of a pipeline (pure builders);
//! - [`credentials`]: TLS and per-role Kafka credentials of the pods (pure);
//! - [`status`]: the status and conditions (pure);
//! - [`strimzi`] and [`topic`]: the topic as a Strimzi KafkaTopic or directly in Kafka;
//! - [`controller`]: the reconcile itself.

pub mod controller;
pub mod credentials;
pub mod desired;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod scaling;
pub mod status;
pub mod strimzi;
pub mod topic;

pub use controller::Error;

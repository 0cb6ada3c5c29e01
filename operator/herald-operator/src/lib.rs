//! Herald's control plane: reconciles `NotificationPipeline`s into producer and consumer
//! Deployments, Services and the topic.
//!
//! - [`validate`]: every spec check and the tenancy policy, once, into a [`validate::ValidPipeline`];
//! - [`desired`], [`credentials`], [`strimzi`]: the objects (pure builders); [`selector`]: label
//!   selectors in `kubectl -l` syntax;
//! - [`status`], [`scaling`]: the status and the consumer count (pure);
//! - [`controller`]: the reconcile, step by step;
//! - [`prober`] and [`kafka`]: the background lag prober and its Kafka client;
//! - [`topic`]: topics created or checked with the Kafka Admin API;
//! - [`leader`], [`run`]: leader election and `herald-operator run`.

pub mod controller;
pub mod credentials;
pub mod desired;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod kafka;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod prober;
pub mod run;
pub mod scaling;
pub mod selector;
pub mod status;
pub mod strimzi;
pub mod topic;
pub mod validate;

pub use controller::Error;

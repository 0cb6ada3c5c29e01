//! Herald's control plane: reconciles `NotificationPipeline`s into producer and consumer
//! Deployments, Services and the topic.
//!
//! The rooms, from the top: [`run`] (`herald-operator run`: watches, leader election, the
//! metrics endpoint) starts the [`controller`] (the reconcile, step by step, and the only place
//! that talks to the API server about pipelines), which uses
//! - [`build`]: everything pure — validation into a [`build::validate::ValidPipeline`], the
//!   children, the Strimzi objects, credentials, the status, the scaling rule;
//! - [`kafka`]: the operator's Kafka I/O — topics through the Admin API and the lag prober.
//!
//! [`leader`] and [`metrics`] stand beside them.

pub mod build;
pub mod controller;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod kafka;
pub mod leader;
pub mod metrics;
pub mod run;

pub use controller::Error;

//! What a pipeline becomes, computed without I/O: every module here is a pure function of the
//! pipeline, the operator's settings and what the reconcile observed; none touches a client or
//! can fail but [`validate`], which turns a pipeline into the [`validate::ValidPipeline`] the
//! others take.
//!
//! - [`validate`]: every spec check and the tenancy policy, once; [`names`]: the names a
//!   pipeline gives to what it becomes;
//! - [`desired`] (Services, budget, NetworkPolicies, the declared list of children) and
//!   [`workloads`] (the Deployments); [`credentials`]: the pods' Kafka security;
//!   [`strimzi`]: the KafkaTopic and KafkaUsers; [`selector`]: label selectors;
//! - [`status`], [`reason`]: the status and its reasons; [`scaling`]: the consumer count;
//!   [`rollout`]: consumers roll before the producer.

pub mod credentials;
pub mod desired;
pub mod names;
pub mod reason;
pub mod rollout;
pub mod scaling;
pub mod selector;
pub mod status;
pub mod strimzi;
pub mod validate;
pub mod workloads;

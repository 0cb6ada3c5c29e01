//! Herald's control plane. This first part holds the pure layer: the desired objects of a
//! `NotificationPipeline` (see [`desired`]) and the topic in Kafka for `Admin` and `External`
//! management (see [`topic`]). The reconciler that applies them follows.

pub mod desired;
pub mod topic;

//! Herald's control plane. This first part holds the pure layer: the desired objects of a
//! `NotificationPipeline` (see [`desired`]). The reconciler that applies them follows.

pub mod desired;

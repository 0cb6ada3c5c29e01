//! `/readyz`: a starting consumer is ready once it can answer for every user — it has joined
//! the group, and every partition can be answered completely here or by another member (the
//! view's serving, handing-off or standby holders). That is a latch, checked at start-up only:
//! gating readiness all the time would make every pod unready when one owner crashes, emptying
//! the Service. A consumer shutting down is not ready, so that Services stop sending it reads
//! while it hands its partitions off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::claims::Claims;
use crate::group::GroupStatus;
use crate::membership::Membership;
use crate::moves::decide::covered;

/// The readiness of one consumer.
pub struct Readiness {
    status: Arc<GroupStatus>,
    claims: Arc<Claims>,
    membership: Arc<Membership>,
    /// Only with other members to ask: without `--peers` a consumer answers for its own
    /// partitions only, and could never cover the others.
    require_coverage: bool,
    latched: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    pub fn new(
        status: Arc<GroupStatus>,
        claims: Arc<Claims>,
        membership: Arc<Membership>,
        require_coverage: bool,
    ) -> Self {
        Self {
            status,
            claims,
            membership,
            require_coverage,
            latched: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// Ready, or why not.
    pub fn check(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Acquire) {
            return Err("shutting down: handing partitions off to the other consumers".into());
        }
        if self.latched.load(Ordering::Acquire) {
            return Ok(());
        }
        self.status.ready()?;
        if self.require_coverage {
            let here = |p| self.claims.get(p).is_some_and(|c| c.answerable());
            covered(&self.membership.view(), here)?;
        }
        self.latched.store(true, Ordering::Release);
        Ok(())
    }

    /// Not ready from now on (shutting down).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

//! The read barrier: a read of a partition this member holds waits (bounded by
//! `--read-timeout`) until the partition is restored and the loop has handled everything up to
//! the log end seen at the request, so that an acknowledged notification is never missing.
//!
//! The log end is asked of the broker once for all the reads that wait for it together
//! ([`super::log_ends`]).

use std::sync::Arc;

use tokio::time::Instant;

use super::state::AppState;
use crate::claims::{Claim, Claims};

/// Waits until `done` holds for the claim, or the deadline passes.
async fn wait_until(claims: &Claims, deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    let _waiting = claims.waiting();
    loop {
        let progress = claims.progress();
        tokio::pin!(progress);
        progress.as_mut().enable();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, progress).await.is_err() {
            return done();
        }
    }
}

/// Waits (at most `--read-timeout`) until the claim is restored and the loop has handled
/// everything up to the log end seen now; the error is a 503's message.
pub async fn wait_complete(state: &AppState, claim: &Arc<Claim>) -> Result<(), String> {
    let deadline = Instant::now() + state.read_timeout;
    let partition = claim.partition;
    if !wait_until(&state.claims, deadline, || claim.restored() || !state.claims.is_current(claim)).await
        || !claim.restored()
    {
        return Err(format!("partition {partition} is being restored from the log"));
    }
    let arrived = Instant::now();
    let watermarks = state.log_ends.after(partition, arrived, deadline.saturating_duration_since(arrived)).await;
    let Some((low, high)) = watermarks else {
        return Err(format!("the log end of partition {partition} could not be read"));
    };
    let caught_up = || claim.handled().max(low) >= high || !state.claims.is_current(claim);
    if !wait_until(&state.claims, deadline, caught_up).await {
        return Err(format!("partition {partition} is behind the log end; consuming"));
    }
    Ok(())
}

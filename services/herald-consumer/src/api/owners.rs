//! Who answers for a user: the partitions holding their notifications, and for each partition
//! this member (when it holds it) or the member the group's membership names. While ownership is
//! moving the answer is a 503, never a wrong empty list.

use std::sync::Arc;

use herald_kit::model::UserId;

use super::error::ReadError;
use super::state::AppState;
use crate::claims::Claim;

/// The partitions holding `user`'s notifications in the topic as the group sees it now, the
/// current one last (more than one only for a grown topic); 503 while the partition count is
/// not known.
pub fn user_partitions(state: &AppState, user: &UserId) -> Result<Vec<i32>, ReadError> {
    let partitions = state.membership.view().partitions;
    if partitions <= 0 {
        return Err(ReadError::unavailable("the topic's partition count is not known yet"));
    }
    Ok(state.partition_history.partitions_for_user(user, partitions))
}

/// Who answers for a partition.
pub enum Holder {
    /// This member holds it.
    Here(Arc<Claim>),
    /// Another member (its URL) holds it.
    Peer(String),
}

/// Who holds `partition`; the 503 when nobody is known to, or when the request was already
/// forwarded here by a peer and this member does not hold it (one hop only).
pub fn holder(state: &AppState, partition: i32, forwarded: bool) -> Result<Holder, ReadError> {
    if let Some(claim) = state.claims.get(partition) {
        return Ok(Holder::Here(claim));
    }
    if forwarded {
        return Err(not_held(state, partition));
    }
    match state.membership.view().owners.get(&partition) {
        Some(owner) if owner.trim_end_matches('/') != state.self_url().trim_end_matches('/') => {
            Ok(Holder::Peer(owner.clone()))
        }
        _ => Err(no_owner(state, partition)),
    }
}

/// A forwarded request for a partition this member does not hold: one hop only — the sender's
/// view of the group is stale, or ours is. Only an authenticated peer makes this member look
/// again.
pub fn not_held(state: &AppState, partition: i32) -> ReadError {
    if state.peer.token().is_some() {
        state.membership.refresh_soon();
    }
    tracing::debug!(partition, "forwarded request for a partition this member does not hold");
    ReadError::unavailable(format!("partition {partition} is not assigned to this consumer (rebalancing)"))
}

fn no_owner(state: &AppState, partition: i32) -> ReadError {
    state.membership.refresh_soon();
    ReadError::unavailable(format!("partition {partition} has no owner right now (rebalancing)"))
}

/// The partition of a read moved away while the read was being answered.
pub fn moved(partition: i32) -> ReadError {
    ReadError::unavailable(format!("partition {partition} moved to another consumer (rebalancing)"))
}

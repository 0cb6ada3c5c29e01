//! Who answers for a user: the partitions holding their notifications, and for each partition
//! the members that can answer completely, best first — this member when its claim is restored
//! (owned, being handed off, or a standby), then the others as the group's view ranks them
//! (serving, handing off, standby, restoring), this member's own restoring claim last. A read
//! tries them in turn on a 503, so a partition that moves keeps being answered. While nobody can
//! answer the answer is a 503, never a wrong empty list.

use std::sync::Arc;

use herald_model::UserId;

use super::error::ReadError;
use super::state::AppState;
use crate::claims::Claim;

/// Most members one read asks about one partition.
const MAX_SOURCES: usize = 3;

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

/// One member that may answer for a partition.
pub enum Source {
    /// This member holds it.
    Here(Arc<Claim>),
    /// Another member (the URL its reads are forwarded to) holds it.
    Peer(String),
}

/// Who may answer for `partition`, best first; the 503 when nobody is known to, or when the
/// request was already forwarded here by a peer and this member does not hold it (one hop only).
pub fn sources(state: &AppState, partition: i32, forwarded: bool) -> Result<Vec<Source>, ReadError> {
    let local = state.claims.get(partition);
    if forwarded {
        return match local {
            Some(claim) => Ok(vec![Source::Here(claim)]),
            None => Err(not_held(state, partition)),
        };
    }
    let view = state.membership.view();
    let me = state.self_url().trim_end_matches('/');
    let peers = view.holders(partition).iter().filter(|c| c.address.trim_end_matches('/') != me);
    let (complete, restoring): (Vec<_>, Vec<_>) = peers.partition(|c| c.state.answers());
    let mut all = Vec::with_capacity(MAX_SOURCES);
    let local_restoring = match local {
        Some(claim) if claim.answerable() => {
            all.push(Source::Here(claim));
            None
        }
        other => other,
    };
    all.extend(complete.into_iter().map(|c| Source::Peer(c.address.clone())));
    // A restore here is waited for before one elsewhere: it needs no hop.
    all.extend(local_restoring.map(Source::Here));
    all.extend(restoring.into_iter().map(|c| Source::Peer(c.address.clone())));
    all.truncate(MAX_SOURCES);
    if all.is_empty() {
        return Err(no_owner(state, partition));
    }
    Ok(all)
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

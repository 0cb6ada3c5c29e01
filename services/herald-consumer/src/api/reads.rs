//! `GET /notifications/{userID}`: any member answers for any user.
//!
//! The user's partition is the producer's murmur2 mapping; when this member holds it, the read
//! passes the read barrier ([`super::barrier`]) first, so that an acknowledged notification is
//! never missing. Otherwise the read goes to a member holding it (a forwarded read is never
//! forwarded again); while a partition moves, its old owner keeps answering until the new one
//! serves it, and a read that finds one member unable to answer asks the next
//! ([`super::owners::sources`]). Only when none can is the answer 503 with `Retry-After`, never
//! a wrong empty list. A user of a grown topic (`--partition-history`) is read from every
//! partition they mapped to, each part from its holder after that partition's barrier, merged in
//! send order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;
use chrono::Utc;
use herald_model::UserId;

use super::barrier::wait_complete;
use super::caller::Caller;
use super::error::ReadError;
use super::owners::{Source, moved, not_held, sources, user_partitions};
use super::served::{json, parse_part, render};
use super::state::AppState;
use crate::claims::Claim;
use crate::metrics::ForwardOutcome;
use crate::page;
use crate::peer::{Fetched, is_unavailable, relay};
use crate::store::Stored;

/// The headers of another member's answer passed on with it.
const RELAYED: [header::HeaderName; 2] = [header::CONTENT_TYPE, header::RETRY_AFTER];

pub async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ReadError> {
    let query = page::parse_query(query.as_deref()).map_err(ReadError::BadRequest)?;
    let user = &caller.user;
    if let Some(partition) = query.partition {
        // A peer's request for its part of a merged read.
        if !caller.forwarded {
            return Err(ReadError::BadRequest("partition is only for requests between consumers".into()));
        }
        let entries = part(&state, user, partition).await?;
        return Ok(json(render(entries.iter(), None, &page::Query::default())));
    }
    let partitions = user_partitions(&state, user)?;
    if partitions.len() > 1 {
        let lists = gather(&state, &caller, &partitions).await?;
        let merged = page::merge(lists, state.store.max_per_user());
        return Ok(json(render(merged.iter(), since_ms(&state), &query)));
    }
    let partition = partitions[0];
    answer(&state, partition, caller.forwarded, |source| async {
        match source {
            Source::Here(claim) => read_local(&state, &claim, user, &query).await.map(json),
            Source::Peer(owner) => forward(&state, &owner, partition, &caller, &query).await,
        }
    })
    .await
}

/// How long a read that found nobody able to answer waits for a fresh view of the group.
const FRESH_VIEW_WAIT: Duration = Duration::from_secs(1);

/// The first answer of `ask` over the members that may answer for `partition`
/// ([`first_answer`]). When none could, this member's view may be stale — a member missed a
/// refresh, a partition moved a moment ago — so, once and while the read's time
/// (`--read-timeout`) allows, it looks at the group again and asks whoever the fresh view names.
/// A forwarded read is answered from this member only (one hop).
pub async fn answer<T, F, Fut>(state: &AppState, partition: i32, forwarded: bool, mut ask: F) -> Result<T, ReadError>
where
    F: FnMut(Source) -> Fut,
    Fut: std::future::Future<Output = Result<T, ReadError>>,
{
    let began = Instant::now();
    let first = match sources(state, partition, forwarded) {
        Ok(found) => first_answer(state, found, &mut ask).await,
        Err(none) => Err(none),
    };
    match first {
        Err(e) if e.is_unavailable() && !forwarded && began.elapsed() < state.read_timeout => {
            let view = state.membership.view_after(began, FRESH_VIEW_WAIT).await;
            if view.refreshed.is_none_or(|at| at <= began) {
                // Nothing new to go by: the same members would be asked again.
                return Err(e);
            }
            state.metrics.read_retries.inc();
            match sources(state, partition, forwarded) {
                Ok(found) => first_answer(state, found, &mut ask).await,
                Err(_) => Err(e),
            }
        }
        done => done,
    }
}

/// The first answer of `ask` over `sources` in turn that is not a 503 (the last 503 when all
/// are), counting each further source asked.
pub async fn first_answer<T, F, Fut>(state: &AppState, sources: Vec<Source>, mut ask: F) -> Result<T, ReadError>
where
    F: FnMut(Source) -> Fut,
    Fut: std::future::Future<Output = Result<T, ReadError>>,
{
    let mut last = ReadError::unavailable("no consumer can answer right now");
    for (i, source) in sources.into_iter().enumerate() {
        if i > 0 {
            state.metrics.read_retries.inc();
        }
        match ask(source).await {
            Err(e) if e.is_unavailable() => last = e,
            done => return done,
        }
    }
    Err(last)
}

/// Reads leave out notifications sent before this (`--history`).
fn since_ms(state: &AppState) -> Option<i64> {
    state.history.map(|h| Utc::now().timestamp_millis() - h.as_millis() as i64)
}

/// What `partition` holds of `user`'s notifications, oldest first, from this member: after the
/// read barrier, when it holds the partition.
async fn part(state: &AppState, user: &UserId, partition: i32) -> Result<Vec<Stored>, ReadError> {
    let Some(claim) = state.claims.get(partition) else { return Err(not_held(state, partition)) };
    wait_complete(state, &claim).await.map_err(ReadError::Unavailable)?;
    let entries = state.store.with_user(user, |all| all.iter().filter(|e| e.partition == partition).cloned().collect());
    if !state.claims.is_current(&claim) {
        return Err(moved(partition));
    }
    Ok(entries)
}

/// Each of `partitions`' part of the caller's user's notifications (a user of a grown topic),
/// from this member or from each partition's owner, asked at once; every part passed its read
/// barrier. The error is the first part's that could not be had.
pub async fn gather(state: &AppState, caller: &Caller, partitions: &[i32]) -> Result<Vec<Vec<Stored>>, ReadError> {
    let user = &caller.user;
    let parts = partitions.iter().map(|p| async move {
        answer(state, *p, false, |source| async move {
            let owner = match source {
                Source::Here(_) => return part(state, user, *p).await,
                Source::Peer(owner) => owner,
            };
            let uri = format!("{}/notifications/{user}?partition={p}", owner.trim_end_matches('/'));
            let (parts, bytes) = from_holder(state, &owner, *p, &uri, caller).await?;
            if !parts.status.is_success() {
                return Err(ReadError::Relayed(Box::new(relay(&parts, Body::from(bytes), &RELAYED))));
            }
            parse_part(user, &bytes).map_err(|why| {
                state.peer.count(ForwardOutcome::Failed);
                // Why can quote a record's key (a user id): debug only.
                tracing::warn!(partition = p, owner, "a peer's part of a merged read is not understood");
                tracing::debug!(partition = p, %why, "why the peer's part is not understood");
                ReadError::unavailable(format!(
                    "the owner of partition {p} answered what this consumer cannot read: {why}"
                ))
            })
        })
        .await
    });
    futures::future::join_all(parts).await.into_iter().collect()
}

/// A read of a partition this member holds: complete up to the log end seen now.
async fn read_local(
    state: &AppState,
    claim: &Arc<Claim>,
    user: &UserId,
    query: &page::Query,
) -> Result<Vec<u8>, ReadError> {
    wait_complete(state, claim).await.map_err(ReadError::Unavailable)?;
    let since_ms = since_ms(state);
    let found = state.store.with_user(user, |entries| render(entries.iter(), since_ms, query));
    // Revoked meanwhile: its users may have been dropped from the store.
    if !state.claims.is_current(claim) {
        return Err(moved(claim.partition));
    }
    Ok(found)
}

/// The read from the owner of `partition`, whose answer is this member's.
async fn forward(
    state: &AppState,
    owner: &str,
    partition: i32,
    caller: &Caller,
    query: &page::Query,
) -> Result<Response, ReadError> {
    // The query as this member understood it, written anew (never the caller's raw string).
    let uri = format!("{}/notifications/{}{}", owner.trim_end_matches('/'), caller.user, query.to_query_string());
    let (parts, bytes) = from_holder(state, owner, partition, &uri, caller).await?;
    let answer = relay(&parts, Body::from(bytes), &RELAYED);
    if is_unavailable(&parts) {
        return Err(ReadError::Relayed(Box::new(answer)));
    }
    Ok(answer)
}

/// `uri` from `owner` (the holder of `partition`) on behalf of the caller: the owner's answer
/// whatever its status, or this member's 503 when there is none. A failure or a 503 makes this
/// member look at the group again.
async fn from_holder(
    state: &AppState,
    owner: &str,
    partition: i32,
    uri: &str,
    caller: &Caller,
) -> Result<Fetched, ReadError> {
    match state.peer.fetch(uri, caller.credentials.as_ref()).await {
        Ok(answer) => {
            if is_unavailable(&answer.0) {
                state.membership.refresh_soon();
            }
            Ok(answer)
        }
        Err(why) => {
            state.membership.refresh_soon();
            tracing::debug!(partition, owner, %why, "forwarding a read failed");
            Err(ReadError::unavailable(format!("the owner of partition {partition} could not be reached: {why}")))
        }
    }
}

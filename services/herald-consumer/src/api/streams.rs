//! `GET /notifications/{userID}/stream`: Server-Sent Events of a user's inbox.
//!
//! - `event: notification`, `id: <cursor>`, `data: <the item as GET serves it>` for each new
//!   notification; `event: read`, `data: {"ids":[…]}` when a read marker marks some;
//! - `Last-Event-ID` (or `?after=<cursor>`) first replays every stored notification after that
//!   cursor, oldest first, then goes on live: exactly once and in order (the live events the
//!   replay already covered are skipped by position);
//! - a `: heartbeat` comment every 15 s;
//! - the consumer holding the user's partition serves it, after the same read barrier as a
//!   `GET` (restored and caught up with the log end), so nothing acknowledged before the connect is
//!   missing; any other consumer proxies the owner's stream; when the partition moves away the
//!   stream ends, and the client's reconnect lands on the new owner and replays from its last id;
//! - a user of a grown topic (`--partition-history`) is served by the holder of their current
//!   partition: the replay merges every partition they mapped to (as a read does), live events
//!   come from the current one;
//! - at most `--max-streams` per consumer (proxied ones included), 503 beyond;
//!   `herald_consumer_streams` counts them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tokio::sync::broadcast::error::RecvError;

use super::barrier::wait_complete;
use super::caller::Caller;
use super::error::ReadError;
use super::owners::{Source, moved, user_partitions};
use super::reads::{answer, gather};
use super::served::{notification_event, read_event};
use super::slots::Slot;
use super::state::AppState;
use crate::claims::Claim;
use crate::page::{self, Cursor};
use crate::peer::relay;
use crate::store::{Change, Stored};

/// How often a live stream checks that this member still holds the user's partition.
const OWNERSHIP_CHECK: Duration = Duration::from_millis(500);

/// The heartbeat comment's interval.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Where the client's stream left off: `Last-Event-ID`, else `?after=`.
fn resume_point(headers: &HeaderMap, query: Option<&str>) -> Result<Option<Cursor>, String> {
    let raw = match headers.get("last-event-id") {
        Some(v) => {
            Some(v.to_str().map_err(|_| "Last-Event-ID is not a cursor this API gave out".to_string())?.to_string())
        }
        None => query
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "after")
            .map(|(_, v)| v.to_string()),
    };
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => Cursor::decode(raw)
            .map(Some)
            .ok_or_else(|| "Last-Event-ID (or after) is not a cursor this API gave out".into()),
    }
}

pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ReadError> {
    let after = resume_point(&headers, query.as_deref()).map_err(ReadError::BadRequest)?;
    let Some(slot) = state.streams.open() else {
        state.metrics.streams_refused.inc();
        return Err(ReadError::unavailable(format!(
            "this consumer serves its maximum of {} streams",
            state.streams.max()
        )));
    };
    let slot = std::sync::Mutex::new(Some(slot));
    // A user of a grown topic: the holder of their current partition serves the stream, its
    // replay merged from every partition they mapped to.
    let partitions = user_partitions(&state, &caller.user)?;
    let partition = partitions[partitions.len() - 1];
    let (caller, partitions, slot) = (&caller, &partitions, &slot);
    answer(&state, partition, caller.forwarded, |source| {
        let state = &state;
        async move {
            match source {
                Source::Here(claim) => serve(state, claim, caller, partitions, after, slot).await,
                Source::Peer(owner) => proxy(state, &owner, partition, caller, after, slot).await,
            }
        }
    })
    .await
}

/// The stream's slot, taken by the source that serves it.
fn take(slot: &std::sync::Mutex<Option<Slot>>) -> Option<Slot> {
    slot.lock().ok().and_then(|mut s| s.take())
}

/// The stream of a user whose (current) partition this member holds; `partitions` are all the
/// user's, the current one last.
async fn serve(
    state: &AppState,
    claim: Arc<Claim>,
    caller: &Caller,
    partitions: &[i32],
    after: Option<Cursor>,
    slot: &std::sync::Mutex<Option<Slot>>,
) -> Result<Response, ReadError> {
    let user = &caller.user;
    wait_complete(state, &claim).await.map_err(ReadError::Unavailable)?;
    // Subscribed before the snapshot: whatever is stored after the snapshot is published to this
    // receiver; what both carry is skipped by position below.
    let mut live = state.store.subscribe(user);
    let wanted = |e: &Stored| after.is_none_or(|c| c.is_before(e));
    let replay: Vec<Stored> = if partitions.len() > 1 {
        let lists = gather(state, caller, partitions).await?;
        page::merge(lists, state.store.max_per_user()).into_iter().filter(wanted).collect()
    } else {
        state.store.with_user(user, |entries| entries.iter().filter(|e| wanted(e)).cloned().collect())
    };
    if !state.claims.is_current(&claim) {
        return Err(moved(claim.partition));
    }
    let mut seen = after;
    if let Some(last) = replay.last() {
        seen = Some(Cursor::of(last));
    }
    let claims = state.claims.clone();
    let slot = take(slot);
    let replayed = futures::stream::iter(replay.into_iter().map(|e| Ok::<_, Infallible>(notification_event(&e))));
    let live = async_stream_of(move |tx| async move {
        let _slot = slot;
        let mut check = tokio::time::interval(OWNERSHIP_CHECK);
        loop {
            tokio::select! {
                change = live.recv() => match change {
                    Ok(change) => match &*change {
                        Change::Notification(entry) => {
                            if seen.is_some_and(|c| !c.is_before(entry)) {
                                continue;
                            }
                            seen = Some(Cursor::of(entry));
                            if tx.send(notification_event(entry)).await.is_err() {
                                return;
                            }
                        }
                        Change::Read(ids) => {
                            if tx.send(read_event(ids)).await.is_err() {
                                return;
                            }
                        }
                    },
                    // Too slow a client: end the stream; its reconnect replays from its last id.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
                _ = check.tick() => {
                    if !claims.is_current(&claim) {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let events = replayed.chain(live.map(Ok::<_, Infallible>));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")).into_response())
}

/// A stream of events written by `produce` into a bounded channel; the stream ends when
/// `produce` returns, `produce` sees the channel closed when the client is gone.
fn async_stream_of<F, Fut>(produce: F) -> impl futures::Stream<Item = Event>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The owner's stream, passed through as it comes.
async fn proxy(
    state: &AppState,
    owner: &str,
    partition: i32,
    caller: &Caller,
    after: Option<Cursor>,
    slot: &std::sync::Mutex<Option<Slot>>,
) -> Result<Response, ReadError> {
    let uri = format!("{}/notifications/{}/stream", owner.trim_end_matches('/'), caller.user);
    let opened = state.peer.open(&uri, caller.credentials.as_ref(), after.map(|c| c.encode())).await;
    let response = match opened {
        Ok(Ok(response)) => response,
        Ok(Err((parts, bytes))) => {
            let answer = relay(&parts, Body::from(bytes), &[header::CONTENT_TYPE, header::RETRY_AFTER]);
            if crate::peer::is_unavailable(&parts) {
                state.membership.refresh_soon();
                return Err(ReadError::Relayed(Box::new(answer)));
            }
            return Ok(answer);
        }
        Err(why) => {
            state.membership.refresh_soon();
            return Err(ReadError::unavailable(format!(
                "the owner of partition {partition} could not be reached: {why}"
            )));
        }
    };
    let (parts, body) = response.into_parts();
    let slot = take(slot);
    // The slot lives as long as the proxied body.
    let body = http_body_util::BodyExt::map_frame(body, move |frame| {
        let _ = &slot;
        frame
    });
    Ok(relay(&parts, Body::new(body), &[header::CONTENT_TYPE, header::CACHE_CONTROL]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_resume_point_comes_from_last_event_id_or_after() {
        let c = Cursor { partition: 1, offset: 5, sent_at_ms: 7 };
        let mut h = HeaderMap::new();
        assert_eq!(resume_point(&h, None).unwrap(), None);
        assert_eq!(resume_point(&h, Some(&format!("after={}", c.encode()))).unwrap(), Some(c));
        h.insert("last-event-id", HeaderValue::from_str(&c.encode()).unwrap());
        assert_eq!(resume_point(&h, Some("after=nope")).unwrap(), Some(c));
        h.insert("last-event-id", HeaderValue::from_static("nope"));
        assert!(resume_point(&h, None).is_err());
    }
}

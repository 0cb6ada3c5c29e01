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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use herald_kit::http::JsonError;
use http_body_util::Empty;
use prometheus::IntGauge;
use tokio::sync::broadcast::error::RecvError;

use crate::app::{
    AppState, Holder, authorize, gather, holder, owner_request, relayed, unavailable, user_partitions, wait_complete,
};
use crate::claims::Claim;
use crate::metrics::ForwardOutcome;
use crate::page::{self, Cursor};
use crate::store::{Change, Stored};

/// How often a live stream checks that this member still holds the user's partition.
const OWNERSHIP_CHECK: Duration = Duration::from_millis(500);

/// The heartbeat comment's interval.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The open streams of a consumer, bounded.
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    gauge: IntGauge,
}

/// One open stream; closes it when dropped.
pub struct Slot(Arc<Streams>);

impl Drop for Slot {
    fn drop(&mut self) {
        let now = self.0.open.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.gauge.set(now as i64);
    }
}

impl Streams {
    pub fn new(max: usize, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self { open: AtomicUsize::new(0), max, gauge })
    }

    /// A slot for one more stream, unless `max` are open.
    fn open(self: &Arc<Self>) -> Option<Slot> {
        let mut now = self.open.load(Ordering::Acquire);
        loop {
            if now >= self.max {
                return None;
            }
            match self.open.compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.gauge.set(now as i64 + 1);
                    return Some(Slot(self.clone()));
                }
                Err(actual) => now = actual,
            }
        }
    }
}

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

fn notification_event(entry: &Stored) -> Event {
    let mut data = Vec::with_capacity(entry.served_len_hint());
    entry.write_served(&mut data);
    Event::default().event("notification").id(Cursor::of(entry).encode()).data(String::from_utf8_lossy(&data))
}

pub async fn stream(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (user, forwarded) = match authorize(&state, &raw, &headers) {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let after = match resume_point(&headers, query.as_deref()) {
        Ok(c) => c,
        Err(message) => return JsonError::new(StatusCode::BAD_REQUEST, message).into_response(),
    };
    let Some(slot) = state.streams.open() else {
        return unavailable(format!("this consumer serves its maximum of {} streams", state.streams.max));
    };
    // A user of a grown topic: the holder of their current partition serves the stream, its
    // replay merged from every partition they mapped to.
    let partitions = match user_partitions(&state, user) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let partition = partitions[partitions.len() - 1];
    match holder(&state, partition, forwarded) {
        Ok(Holder::Here(claim)) => {
            serve(&state, claim, user, &partitions, after, &headers, slot).await.unwrap_or_else(|response| response)
        }
        Ok(Holder::Peer(owner)) => proxy(&state, &owner, partition, user, after, &headers, slot).await,
        Err(response) => *response,
    }
}

/// The stream of a user whose (current) partition this member holds; `partitions` are all the
/// user's, the current one last.
async fn serve(
    state: &AppState,
    claim: Arc<Claim>,
    user: u64,
    partitions: &[i32],
    after: Option<Cursor>,
    headers: &HeaderMap,
    slot: Slot,
) -> Result<Response, Response> {
    wait_complete(state, &claim).await.map_err(unavailable)?;
    // Subscribed before the snapshot: whatever is stored after the snapshot is published to this
    // receiver; what both carry is skipped by position below.
    let mut live = state.store.subscribe(user);
    let wanted = |e: &Stored| after.is_none_or(|c| c.is_before(e));
    let replay: Vec<Stored> = if partitions.len() > 1 {
        let lists = gather(state, user, partitions, headers).await?;
        page::merge(lists, state.store.max_per_user()).into_iter().filter(wanted).collect()
    } else {
        state.store.with_user(user, |entries| entries.iter().filter(|e| wanted(e)).cloned().collect())
    };
    if !state.claims.is_current(&claim) {
        return Err(unavailable(format!("partition {} moved to another consumer (rebalancing)", claim.partition)));
    }
    let mut seen = after;
    if let Some(last) = replay.last() {
        seen = Some(Cursor::of(last));
    }
    let claims = state.claims.clone();
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
                            let data = serde_json::json!({ "ids": ids }).to_string();
                            if tx.send(Event::default().event("read").data(data)).await.is_err() {
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
    user: u64,
    after: Option<Cursor>,
    headers: &HeaderMap,
    slot: Slot,
) -> Response {
    let forwarder = &state.forwarder;
    let failed = |why: String| {
        forwarder.count(ForwardOutcome::Failed);
        state.membership.refresh_soon();
        unavailable(format!("the owner of partition {partition} could not be reached: {why}"))
    };
    let uri = format!("{}/notifications/{user}/stream", owner.trim_end_matches('/'));
    let mut request = owner_request(state, &uri, headers);
    if let Some(cursor) = after {
        request = request.header("last-event-id", cursor.encode());
    }
    let request = match request.body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return failed(format!("bad owner URL {uri}: {e}")),
    };
    // Only the answer's head is bounded in time; the body is the stream.
    let response = match tokio::time::timeout(forwarder.timeout(), forwarder.client().request(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(e.to_string()),
        Err(_) => return failed(format!("no answer within {:?}", forwarder.timeout())),
    };
    let (parts, body) = response.into_parts();
    if !parts.status.is_success() {
        forwarder.count(ForwardOutcome::Rejected);
        if parts.status == StatusCode::SERVICE_UNAVAILABLE {
            state.membership.refresh_soon();
        }
        let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 64 * 1024))
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return relayed(&parts, Body::from(bytes), &[header::CONTENT_TYPE, header::RETRY_AFTER]);
    }
    forwarder.count(ForwardOutcome::Ok);
    // The slot lives as long as the proxied body.
    let body = http_body_util::BodyExt::map_frame(body, move |frame| {
        let _ = &slot;
        frame
    });
    relayed(&parts, Body::new(body), &[header::CONTENT_TYPE, header::CACHE_CONTROL])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn streams_are_bounded_and_counted() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let streams = Streams::new(2, gauge.clone());
        let a = streams.open().unwrap();
        let b = streams.open().unwrap();
        assert!(streams.open().is_none());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        let _c = streams.open().unwrap();
        drop(b);
        assert_eq!(gauge.get(), 1);
    }

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

//! The consumer's HTTP API: `GET /notifications/{userID}` plus the operational routes.
//!
//! Any member answers for any user. The user's partition is the producer's murmur2 mapping;
//! when this member holds it, the read waits (bounded) until the partition is restored and the
//! loop has handled everything up to the log end seen at the request, so that an acknowledged
//! notification is never missing. Otherwise the read goes to the owner named by the group's
//! membership, once (a forwarded read is never forwarded again). While ownership is moving the
//! answer is 503 with `Retry-After`, never a wrong empty list. A user of a grown topic
//! (`--partition-history`) is read from every partition they mapped to, each part from its
//! holder after that partition's barrier, merged in send order.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::Utc;
use herald_kit::auth::{AuthError, Authenticator, Identity, PeerToken};
use herald_kit::http::{EdgeArgs, HttpMetrics, JsonError, ReadyCheck, with_operational_routes};
use herald_kit::model::parse_user_id;
use herald_kit::partition::PartitionHistory;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounter;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::time::Instant;

use crate::claims::{Claim, Claims};
use crate::group::GroupStatus;
use crate::membership::{CLAIMS_PATH, Membership, PeerClaims};
use crate::metrics::{ConsumerMetrics, ForwardOutcome};
use crate::page;
use crate::store::{Store, Stored};

/// Marks a read forwarded by another member (its value: that member's URL).
pub const FORWARDED_HEADER: &str = "x-herald-forwarded-by";
/// How long a client is asked to wait before retrying a 503.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Forwarding to the owner of a partition.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    /// A forwarded answer larger than this is refused (a user holds at most `--max-per-user`).
    max_body: usize,
    outcomes: [IntCounter; 3],
}

impl Forwarder {
    /// The HTTP client, shared with the peer discovery.
    pub fn client(&self) -> Client<HttpConnector, Empty<Bytes>> {
        self.client.clone()
    }

    pub fn new(timeout: Duration, max_body: usize, metrics: &ConsumerMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let counter = |o: ForwardOutcome| metrics.forwarded_requests.with_label_values(&[o.label()]);
        Self {
            client,
            timeout,
            max_body,
            outcomes: [counter(ForwardOutcome::Ok), counter(ForwardOutcome::Rejected), counter(ForwardOutcome::Failed)],
        }
    }

    /// How long a forwarded request may take (for a stream: until its answer's head).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn count(&self, outcome: ForwardOutcome) {
        let i = match outcome {
            ForwardOutcome::Ok => 0,
            ForwardOutcome::Rejected => 1,
            ForwardOutcome::Failed => 2,
        };
        self.outcomes[i].inc();
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub status: Arc<GroupStatus>,
    pub claims: Arc<Claims>,
    pub membership: Arc<Membership>,
    /// A client of its own (no group) for the log end of a partition.
    pub probe: Arc<BaseConsumer>,
    pub topic: String,
    /// This member's advertised URL.
    pub self_url: String,
    /// How long a local read may wait for a restore or for the loop to catch up.
    pub read_timeout: Duration,
    /// Reads leave out notifications sent before now minus this (`--history`).
    pub history: Option<Duration>,
    pub forwarder: Forwarder,
    /// Who may read what.
    pub auth: Arc<Authenticator>,
    /// Sent with forwarded reads; required of forwarded reads and `/internal/claims` when set.
    pub peer_token: Option<PeerToken>,
    /// The open streams, bounded by `--max-streams`.
    pub streams: Arc<crate::stream::Streams>,
    /// Every partition count the topic has had (`--partition-history`).
    pub partition_history: PartitionHistory,
}

/// The whole consumer API (its metrics are served on their own listener).
pub fn router(state: AppState, http: HttpMetrics, edge: &EdgeArgs) -> Router {
    let status = state.status.clone();
    let ready: ReadyCheck = Arc::new(move || status.ready());
    let live: ReadyCheck = Arc::new(|| Ok(()));
    let api = Router::new()
        .route("/notifications/{user_id}", get(notifications))
        .route("/notifications/{user_id}/stream", get(crate::stream::stream))
        .route(CLAIMS_PATH, get(claims))
        .with_state(state);
    with_operational_routes(api, http, edge, live, ready)
}

/// Whether `headers` carry the peer token, when one is configured.
fn peer_checked(state: &AppState, headers: &HeaderMap) -> Result<(), AuthError> {
    if state.peer_token.is_none() {
        return Ok(());
    }
    match state.auth.authenticate(headers) {
        Ok(Identity::Peer) => Ok(()),
        Ok(_) => Err(AuthError::PeerOnly),
        Err(e) => Err(e),
    }
}

/// Who may read `raw`'s inbox: the user id and whether the request was forwarded by a peer, or
/// the answer that refuses it (401, 403, 400).
pub(crate) fn authorize(state: &AppState, raw: &str, headers: &HeaderMap) -> Result<(u64, bool), Box<Response>> {
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    // A read marked as forwarded must come from a peer: checked before anything else, so that a
    // spoofed one costs nothing (no peer refresh).
    if forwarded && let Err(e) = peer_checked(state, headers) {
        return Err(Box::new(e.into_response()));
    }
    let identity = state.auth.authenticate(headers).map_err(|e| Box::new(e.into_response()))?;
    let Some(user) = parse_user_id(raw) else {
        return Err(Box::new(
            JsonError::new(StatusCode::BAD_REQUEST, "userID must be a positive integer").into_response(),
        ));
    };
    if !identity.may_read(user) {
        let message = format!("this token may not read user {user}'s notifications");
        return Err(Box::new(JsonError::new(StatusCode::FORBIDDEN, message).into_response()));
    }
    Ok((user, forwarded))
}

async fn notifications(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (user, forwarded) = match authorize(&state, &raw, &headers) {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let query = match page::parse_query(query.as_deref()) {
        Ok(q) => q,
        Err(message) => return JsonError::new(StatusCode::BAD_REQUEST, message).into_response(),
    };
    if let Some(partition) = query.partition {
        // A peer's request for its part of a merged read.
        if !forwarded {
            return JsonError::new(StatusCode::BAD_REQUEST, "partition is only for requests between consumers")
                .into_response();
        }
        return match part(&state, user, partition).await {
            Ok(entries) => answer(render(entries.iter(), None, &page::Query::default())),
            Err(response) => response,
        };
    }
    let partitions = match user_partitions(&state, user) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    if partitions.len() > 1 {
        return match gather(&state, user, &partitions, &headers).await {
            Ok(lists) => {
                let merged = page::merge(lists, state.store.max_per_user());
                answer(render(merged.iter(), since_ms(&state), &query))
            }
            Err(response) => response,
        };
    }
    let partition = partitions[0];
    match holder(&state, partition, forwarded) {
        Ok(Holder::Here(claim)) => match read_local(&state, &claim, user, &query).await {
            Ok(body) => answer(body),
            Err(message) => unavailable(message),
        },
        Ok(Holder::Peer(owner)) => forward(&state, &owner, partition, user, &query, &headers).await,
        Err(response) => *response,
    }
}

/// The partitions holding `user`'s notifications in the topic as the group sees it now, the
/// current one last (more than one only for a grown topic); 503 while the partition count is
/// not known.
pub(crate) fn user_partitions(state: &AppState, user: u64) -> Result<Vec<i32>, Box<Response>> {
    let partitions = state.membership.view().partitions;
    if partitions <= 0 {
        return Err(Box::new(unavailable("the topic's partition count is not known yet")));
    }
    Ok(state.partition_history.partitions_for_user(user, partitions))
}

/// Who answers for a partition.
pub(crate) enum Holder {
    /// This member holds it.
    Here(Arc<Claim>),
    /// Another member (its URL) holds it.
    Peer(String),
}

/// Who holds `partition`; the 503 when nobody is known to, or when the request was already
/// forwarded here by a peer and this member does not hold it (one hop only).
pub(crate) fn holder(state: &AppState, partition: i32, forwarded: bool) -> Result<Holder, Box<Response>> {
    if let Some(claim) = state.claims.get(partition) {
        return Ok(Holder::Here(claim));
    }
    if forwarded {
        return Err(Box::new(not_held(state, partition)));
    }
    match state.membership.view().owners.get(&partition) {
        Some(owner) if owner.trim_end_matches('/') != state.self_url.trim_end_matches('/') => {
            Ok(Holder::Peer(owner.clone()))
        }
        _ => Err(Box::new(no_owner(state, partition))),
    }
}

/// A forwarded request for a partition this member does not hold: one hop only — the sender's
/// view of the group is stale, or ours is. Only an authenticated peer makes this member look
/// again.
fn not_held(state: &AppState, partition: i32) -> Response {
    if state.peer_token.is_some() {
        state.membership.refresh_soon();
    }
    tracing::debug!(partition, "forwarded request for a partition this member does not hold");
    unavailable(format!("partition {partition} is not assigned to this consumer (rebalancing)"))
}

fn no_owner(state: &AppState, partition: i32) -> Response {
    state.membership.refresh_soon();
    unavailable(format!("partition {partition} has no owner right now (rebalancing)"))
}

/// Reads leave out notifications sent before this (`--history`).
fn since_ms(state: &AppState) -> Option<i64> {
    state.history.map(|h| Utc::now().timestamp_millis() - h.as_millis() as i64)
}

/// What `partition` holds of `user`'s notifications, oldest first, from this member: after the
/// read barrier, when it holds the partition.
async fn part(state: &AppState, user: u64, partition: i32) -> Result<Vec<Stored>, Response> {
    let Some(claim) = state.claims.get(partition) else { return Err(not_held(state, partition)) };
    wait_complete(state, &claim).await.map_err(unavailable)?;
    let entries = state.store.with_user(user, |all| all.iter().filter(|e| e.partition == partition).cloned().collect());
    if !state.claims.is_current(&claim) {
        return Err(unavailable(format!("partition {partition} moved to another consumer (rebalancing)")));
    }
    Ok(entries)
}

/// Each of `partitions`' part of `user`'s notifications (a user of a grown topic), from this
/// member or from each partition's owner, asked at once; every part passed its read barrier.
/// The error is the first part's that could not be had.
pub(crate) async fn gather(
    state: &AppState,
    user: u64,
    partitions: &[i32],
    headers: &HeaderMap,
) -> Result<Vec<Vec<Stored>>, Response> {
    let parts = partitions.iter().map(|p| async move {
        let owner = match holder(state, *p, false).map_err(|r| *r)? {
            Holder::Here(_) => return part(state, user, *p).await,
            Holder::Peer(owner) => owner,
        };
        let uri = format!("{}/notifications/{user}?partition={p}", owner.trim_end_matches('/'));
        let (parts, bytes) = fetch(state, &owner, *p, &uri, headers).await?;
        if !parts.status.is_success() {
            return Err(relayed(&parts, Body::from(bytes), &[header::CONTENT_TYPE, header::RETRY_AFTER]));
        }
        parse_part(user, &bytes).map_err(|why| {
            state.forwarder.count(ForwardOutcome::Failed);
            tracing::warn!(partition = p, owner, %why, "a peer's part of a merged read is not understood");
            unavailable(format!("the owner of partition {p} answered what this consumer cannot read: {why}"))
        })
    });
    futures::future::join_all(parts).await.into_iter().collect()
}

/// A peer's answer to a `?partition=` request, back in stored form.
fn parse_part(user: u64, bytes: &[u8]) -> Result<Vec<Stored>, String> {
    #[derive(serde::Deserialize)]
    struct Part<'a> {
        #[serde(borrow)]
        notifications: Vec<&'a serde_json::value::RawValue>,
    }
    let part: Part<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    part.notifications.iter().map(|item| Stored::from_served(user, item.get().as_bytes())).collect()
}

/// The partitions this member holds, for its peers (who must show the peer token when one is
/// configured).
async fn claims(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = peer_checked(&state, &headers) {
        return e.into_response();
    }
    axum::Json(PeerClaims { url: state.self_url.clone(), partitions: state.status.assigned() }).into_response()
}

pub(crate) fn unavailable(message: impl Into<String>) -> Response {
    JsonError::unavailable(message, RETRY_AFTER).into_response()
}

/// A user's notifications as the query asks for them — `{"notifications":[…],"unread":N}`, with
/// `"next"` when a limit was given — written from the stored values (`entries`, oldest first),
/// leaving out those sent before `since_ms`. `unread` counts every shown notification not marked
/// read, not only the page's.
fn render<'a>(
    entries: impl DoubleEndedIterator<Item = &'a Stored> + Clone,
    since_ms: Option<i64>,
    query: &page::Query,
) -> Vec<u8> {
    let shown = |e: &Stored| since_ms.is_none_or(|since| e.sent_at_ms >= since);
    let unread = entries.clone().filter(|e| !e.read && shown(e)).count();
    let (items, next) = page::select(entries, query, shown);
    let mut body = Vec::with_capacity(96 + items.iter().map(|e| e.served_len_hint()).sum::<usize>());
    if items.is_empty() {
        body.extend_from_slice(br#"{"message":"No notifications found for user","notifications":["#);
    } else {
        body.extend_from_slice(br#"{"notifications":["#);
    }
    for (i, entry) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        entry.write_served(&mut body);
    }
    body.push(b']');
    body.extend_from_slice(format!(",\"unread\":{unread}").as_bytes());
    if query.limit.is_some() {
        body.extend_from_slice(br#","next":"#);
        match next {
            Some(cursor) => {
                body.push(b'"');
                body.extend_from_slice(cursor.encode().as_bytes());
                body.push(b'"');
            }
            None => body.extend_from_slice(b"null"),
        }
    }
    body.push(b'}');
    body
}

fn answer(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

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

/// A read of a partition this member holds: complete up to the log end seen now.
async fn read_local(state: &AppState, claim: &Arc<Claim>, user: u64, query: &page::Query) -> Result<Vec<u8>, String> {
    wait_complete(state, claim).await?;
    let since_ms = since_ms(state);
    let found = state.store.with_user(user, |entries| render(entries.iter(), since_ms, query));
    // Revoked meanwhile: its users may have been dropped from the store.
    if !state.claims.is_current(claim) {
        return Err(format!("partition {} moved to another consumer (rebalancing)", claim.partition));
    }
    Ok(found)
}

/// The read barrier: waits (at most `--read-timeout`) until the claim is restored and the loop
/// has handled everything up to the log end seen now; the error is a 503's message.
pub(crate) async fn wait_complete(state: &AppState, claim: &Arc<Claim>) -> Result<(), String> {
    let deadline = Instant::now() + state.read_timeout;
    let partition = claim.partition;
    if !wait_until(&state.claims, deadline, || claim.restored() || !state.claims.is_current(claim)).await
        || !claim.restored()
    {
        return Err(format!("partition {partition} is being restored from the log"));
    }
    let (probe, topic) = (state.probe.clone(), state.topic.clone());
    let timeout = deadline.saturating_duration_since(Instant::now());
    let watermarks = tokio::task::spawn_blocking(move || probe.fetch_watermarks(&topic, partition, timeout))
        .await
        .ok()
        .and_then(|r| r.inspect_err(|error| tracing::warn!(partition, %error, "reading the log end failed")).ok());
    let Some((low, high)) = watermarks else {
        return Err(format!("the log end of partition {partition} could not be read"));
    };
    let caught_up = || claim.handled().max(low) >= high || !state.claims.is_current(claim);
    if !wait_until(&state.claims, deadline, caught_up).await {
        return Err(format!("partition {partition} is behind the log end; consuming"));
    }
    Ok(())
}

async fn forward(
    state: &AppState,
    owner: &str,
    partition: i32,
    user: u64,
    query: &page::Query,
    headers: &HeaderMap,
) -> Response {
    // The query as this member understood it, written anew (never the caller's raw string).
    let mut uri = format!("{}/notifications/{user}", owner.trim_end_matches('/'));
    if let Some(limit) = query.limit {
        uri.push_str(&format!("?limit={limit}"));
        if let Some(before) = &query.before {
            uri.push_str(&format!("&before={}", before.encode()));
        }
    }
    match fetch(state, owner, partition, &uri, headers).await {
        Ok((parts, bytes)) => relayed(&parts, Body::from(bytes), &[header::CONTENT_TYPE, header::RETRY_AFTER]),
        Err(response) => response,
    }
}

/// `uri` from `owner` (the holder of `partition`) on behalf of the caller, counted by outcome;
/// the owner's answer whatever its status, or this member's 503 when there is none.
async fn fetch(
    state: &AppState,
    owner: &str,
    partition: i32,
    uri: &str,
    headers: &HeaderMap,
) -> Result<(axum::http::response::Parts, Bytes), Response> {
    let failed = |why: String| {
        state.forwarder.count(ForwardOutcome::Failed);
        state.membership.refresh_soon();
        tracing::debug!(partition, owner, %why, "forwarding a read failed");
        unavailable(format!("the owner of partition {partition} could not be reached: {why}"))
    };
    let request = match owner_request(state, uri, headers).body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return Err(failed(format!("bad owner URL {uri}: {e}"))),
    };
    let fetched = tokio::time::timeout(state.forwarder.timeout, async {
        let response = state.forwarder.client.request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, state.forwarder.max_body).collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((parts, bytes))
    })
    .await;
    let (parts, bytes) = match fetched {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => return Err(failed(why)),
        Err(_) => return Err(failed(format!("no answer within {:?}", state.forwarder.timeout))),
    };
    if parts.status.is_success() {
        state.forwarder.count(ForwardOutcome::Ok);
    } else {
        state.forwarder.count(ForwardOutcome::Rejected);
        if parts.status == StatusCode::SERVICE_UNAVAILABLE {
            state.membership.refresh_soon();
        }
    }
    Ok((parts, bytes))
}

/// A request to a partition's owner on behalf of a caller: marked as forwarded by this member,
/// with the peer token (the owner trusts it; this member already checked who may read) or,
/// without one, the caller's own credentials, which the owner checks again.
pub(crate) fn owner_request(state: &AppState, uri: &str, headers: &HeaderMap) -> axum::http::request::Builder {
    let request = axum::http::Request::get(uri)
        .header(FORWARDED_HEADER, HeaderValue::from_str(&state.self_url).unwrap_or(HeaderValue::from_static("?")));
    match (&state.peer_token, headers.get(header::AUTHORIZATION)) {
        (Some(token), _) => request.header(header::AUTHORIZATION, token.header()),
        (None, Some(theirs)) => request.header(header::AUTHORIZATION, theirs.clone()),
        (None, None) => request,
    }
}

/// The owner's answer as this member's: its status, `body`, and the headers named.
pub(crate) fn relayed(parts: &axum::http::response::Parts, body: Body, names: &[header::HeaderName]) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = parts.status;
    for name in names {
        if let Some(v) = parts.headers.get(name) {
            response.headers_mut().insert(name.clone(), v.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::View;
    use axum::http::Request;
    use herald_kit::partition::partition_for_user;
    use rdkafka::ClientConfig;
    use tower::ServiceExt;

    fn mk_app() -> (Router, AppState) {
        let registry = prometheus::Registry::new();
        let metrics = ConsumerMetrics::register(&registry).unwrap();
        // Never contacted by these tests.
        let probe: BaseConsumer = ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9").create().unwrap();
        let state = AppState {
            store: Arc::new(Store::new(100, usize::MAX)),
            status: Arc::new(GroupStatus::default()),
            claims: Arc::new(Claims::default()),
            membership: Arc::new(Membership::default()),
            probe: Arc::new(probe),
            topic: "notifications".into(),
            self_url: "http://127.0.0.1:8081".into(),
            read_timeout: Duration::from_millis(200),
            history: None,
            forwarder: Forwarder::new(Duration::from_millis(500), 1024 * 1024, &metrics),
            auth: Arc::new(Authenticator::open()),
            peer_token: None,
            streams: crate::stream::Streams::new(10, prometheus::IntGauge::new("streams", "streams").unwrap()),
            partition_history: PartitionHistory::default(),
        };
        let http = HttpMetrics::register(&registry).unwrap();
        (router(state.clone(), http, &EdgeArgs::default()), state)
    }

    async fn get_json(app: &Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, serde_json::Value) {
        let mut req = Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    fn view(partitions: i32, owners: &[(i32, &str)]) -> View {
        View { partitions, owners: owners.iter().map(|(p, u)| (*p, u.to_string())).collect(), ..View::default() }
    }

    #[tokio::test]
    async fn rejects_ids_that_are_not_positive_integers() {
        let (app, _) = mk_app();
        for bad in ["abc", "0", "-1", "1.5", "%2B1", "99999999999999999999999"] {
            let (status, _, body) = get_json(&app, &format!("/notifications/{bad}"), &[]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(body["message"], "userID must be a positive integer");
        }
    }

    #[tokio::test]
    async fn unknown_ownership_is_a_503_with_retry_after_never_an_empty_list() {
        let (app, state) = mk_app();
        // Partition count not known yet.
        let (status, headers, body) = get_json(&app, "/notifications/2", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(body["message"].as_str().unwrap().contains("partition count"), "{body}");

        // Known, but nobody owns the partition (mid-rebalance).
        state.membership.set(view(6, &[]));
        let p = partition_for_user(2, 6);
        let (status, headers, body) = get_json(&app, "/notifications/2", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(body["message"], format!("partition {p} has no owner right now (rebalancing)"));

        // The group still names this member, which no longer holds it.
        state.membership.set(view(6, &[(p, "http://127.0.0.1:8081/")]));
        let (status, _, _) = get_json(&app, "/notifications/2", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_part_of_a_merged_read_is_asked_for_by_consumers_only() {
        let (app, state) = mk_app();
        let (status, _, body) = get_json(&app, "/notifications/2?partition=1", &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "partition is only for requests between consumers");
        // From a peer, for a partition this member does not hold: 503, never an empty part.
        state.membership.set(view(6, &[]));
        let (status, _, body) =
            get_json(&app, "/notifications/2?partition=1", &[(FORWARDED_HEADER, "http://127.0.0.1:8082")]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["message"], "partition 1 is not assigned to this consumer (rebalancing)");
    }

    #[tokio::test]
    async fn a_grown_users_read_needs_every_partition_they_mapped_to() {
        let (app, mut state) = mk_app();
        // A user whose partition moved when the topic grew from 3 to 6: the owner of the current
        // partition is reachable, the old one has none → 503 naming the old partition.
        let user = (1..100u64).find(|u| partition_for_user(*u, 3) != partition_for_user(*u, 6)).unwrap();
        let (old, new) = (partition_for_user(user, 3), partition_for_user(user, 6));
        state.partition_history = PartitionHistory::parse("3,6").unwrap();
        let app2 =
            router(state.clone(), HttpMetrics::register(&prometheus::Registry::new()).unwrap(), &EdgeArgs::default());
        drop(app);
        state.membership.set(view(6, &[(new, "http://127.0.0.1:9")]));
        let (status, headers, body) = get_json(&app2, &format!("/notifications/{user}"), &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(body["message"], format!("partition {old} has no owner right now (rebalancing)"));
    }

    #[tokio::test]
    async fn a_forwarded_read_is_never_forwarded_again() {
        let (app, state) = mk_app();
        let p = partition_for_user(2, 6);
        state.membership.set(view(6, &[(p, "http://127.0.0.1:9")]));
        let (status, _, body) =
            get_json(&app, "/notifications/2", &[(FORWARDED_HEADER, "http://127.0.0.1:8082")]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["message"], format!("partition {p} is not assigned to this consumer (rebalancing)"));
    }

    #[tokio::test]
    async fn an_unreachable_owner_is_a_503_and_counted() {
        let (app, state) = mk_app();
        let p = partition_for_user(2, 6);
        // Nothing listens on port 9 (discard) here.
        state.membership.set(view(6, &[(p, "http://127.0.0.1:9")]));
        let (status, headers, body) = get_json(&app, "/notifications/2", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(body["message"].as_str().unwrap().starts_with(&format!("the owner of partition {p}")), "{body}");
        assert_eq!(state.forwarder.outcomes[2].get(), 1);
    }

    #[tokio::test]
    async fn a_restoring_partition_answers_503_when_the_wait_runs_out() {
        let (app, state) = mk_app();
        let p = partition_for_user(2, 6);
        state.membership.set(view(6, &[(p, "http://127.0.0.1:8081")]));
        state.claims.assign(p, Some(10));
        let (status, headers, body) = get_json(&app, "/notifications/2", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(body["message"], format!("partition {p} is being restored from the log"));
    }

    #[tokio::test]
    async fn not_ready_until_assigned() {
        let (app, _) = mk_app();
        let (status, _, body) = get_json(&app, "/readyz", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["message"].as_str().unwrap().contains("assignment"));
        assert_eq!(get_json(&app, "/healthz", &[]).await.0, StatusCode::OK);
    }
}

//! The read routes through the router, without a port or a broker: ids, ownership, forwarding
//! and the read barrier's 503s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use herald_auth::Authenticator;
use herald_kit::http::{EdgeArgs, HttpMetrics};
use herald_model::partition::PartitionHistory;
use http_body_util::BodyExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use tower::ServiceExt;

use herald_consumer::api::slots::Streams;
use herald_consumer::api::{AppState, router};
use herald_consumer::claims::{ClaimState, Claims};
use herald_consumer::group::GroupStatus;
use herald_consumer::group::handle::TailHandle;
use herald_consumer::membership::{Candidate, Membership, View};
use herald_consumer::metrics::ConsumerMetrics;
use herald_consumer::moves::{Moves, MovesConfig};
use herald_consumer::peer::{FORWARDED_HEADER, PeerClient};
use herald_consumer::readiness::Readiness;
use herald_consumer::store::Store;

/// An app listening as `http://127.0.0.1:8081`, open to anyone, with `history`.
fn mk_app(history: PartitionHistory) -> (Router, AppState, ConsumerMetrics) {
    let registry = prometheus::Registry::new();
    let metrics = ConsumerMetrics::register(&registry).unwrap();
    // Never contacted by these tests.
    let probe: BaseConsumer = ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9").create().unwrap();
    let (store, status, claims) =
        (Arc::new(Store::new(100, usize::MAX)), Arc::new(GroupStatus::default()), Arc::new(Claims::default()));
    let moves = Moves::new(
        MovesConfig {
            topic: "notifications".into(),
            self_url: "http://127.0.0.1:8081".into(),
            timeout: Duration::from_secs(60),
            standby: false,
        },
        claims.clone(),
        store.clone(),
        status.clone(),
        TailHandle::detached(),
        metrics.clone(),
    );
    let state = AppState {
        store,
        status,
        claims,
        membership: Arc::new(Membership::default()),
        log_ends: Arc::new(herald_consumer::api::log_ends::LogEnds::new(Arc::new(probe), "notifications")),
        probe: Arc::new(ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9").create().unwrap()),
        topic: "notifications".into(),
        read_timeout: Duration::from_millis(200),
        history: None,
        peer: PeerClient::new(Duration::from_millis(500), 1024 * 1024, None, "http://127.0.0.1:8081", &metrics),
        auth: Arc::new(Authenticator::open()),
        streams: Streams::new(10, prometheus::IntGauge::new("streams", "streams").unwrap()),
        partition_history: history,
        metrics: metrics.clone(),
        moves: Arc::new(moves),
    };
    let readiness =
        Arc::new(Readiness::new(state.status.clone(), state.claims.clone(), state.membership.clone(), false));
    let http = HttpMetrics::register(&registry).unwrap();
    (router(state.clone(), Arc::new(move || readiness.check()), http, &EdgeArgs::default()), state, metrics)
}

/// `GET uri` with `headers`: the status, headers and JSON body of the answer.
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

/// A view of the group: `partitions` in all, each of `owners` served by the URL given.
fn view(partitions: i32, owners: &[(i32, &str)]) -> View {
    let mut view = View { partitions, refreshed: Some(std::time::Instant::now()), ..View::default() };
    for (p, url) in owners {
        let c = Candidate { address: url.to_string(), member: url.to_string(), state: ClaimState::Serving };
        view.holders.entry(*p).or_default().push(c);
    }
    view
}

use axum::http::header;
use herald_model::UserId;
use herald_model::partition::partition_for_user;

fn p_of(user: u64, partitions: i32) -> i32 {
    partition_for_user(&UserId::from(user), partitions)
}

#[tokio::test]
async fn rejects_ids_that_break_the_rule() {
    let (app, _, _) = mk_app(PartitionHistory::default());
    let too_long = "a".repeat(129);
    for bad in ["0", "02", "-1", "%2B1", "99999999999999999999999", "..", "%2E", "a%20b", "a%2Fb", "%C3%A9", &too_long]
    {
        let (status, _, body) = get_json(&app, &format!("/notifications/{bad}"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["message"], herald_model::UserId::RULE);
    }
}

#[tokio::test]
async fn unknown_ownership_is_a_503_with_retry_after_never_an_empty_list() {
    let (app, state, _) = mk_app(PartitionHistory::default());
    // Partition count not known yet.
    let (status, headers, body) = get_json(&app, "/notifications/2", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(body["message"].as_str().unwrap().contains("partition count"), "{body}");

    // Known, but nobody owns the partition (mid-rebalance).
    state.membership.set(view(6, &[]));
    let p = p_of(2, 6);
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
    let (app, state, _) = mk_app(PartitionHistory::default());
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
    // A user whose partition moved when the topic grew from 3 to 6: the owner of the current
    // partition is reachable, the old one has none → 503 naming the old partition.
    let (app, state, _) = mk_app(PartitionHistory::parse("3,6").unwrap());
    let user = (1..100u64).find(|u| p_of(*u, 3) != p_of(*u, 6)).unwrap();
    let (old, new) = (p_of(user, 3), p_of(user, 6));
    state.membership.set(view(6, &[(new, "http://127.0.0.1:9")]));
    let (status, headers, body) = get_json(&app, &format!("/notifications/{user}"), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(body["message"], format!("partition {old} has no owner right now (rebalancing)"));
}

#[tokio::test]
async fn a_forwarded_read_is_never_forwarded_again() {
    let (app, state, _) = mk_app(PartitionHistory::default());
    let p = p_of(2, 6);
    state.membership.set(view(6, &[(p, "http://127.0.0.1:9")]));
    let (status, _, body) = get_json(&app, "/notifications/2", &[(FORWARDED_HEADER, "http://127.0.0.1:8082")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["message"], format!("partition {p} is not assigned to this consumer (rebalancing)"));
}

#[tokio::test]
async fn an_unreachable_owner_is_a_503_and_counted() {
    let (app, state, metrics) = mk_app(PartitionHistory::default());
    let p = p_of(2, 6);
    // Nothing listens on port 9 (discard) here.
    state.membership.set(view(6, &[(p, "http://127.0.0.1:9")]));
    let (status, headers, body) = get_json(&app, "/notifications/2", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(body["message"].as_str().unwrap().starts_with(&format!("the owner of partition {p}")), "{body}");
    assert_eq!(metrics.forwarded_requests.with_label_values(&["failed"]).get(), 1);
}

#[tokio::test]
async fn a_restoring_partition_answers_503_when_the_wait_runs_out() {
    let (app, state, _) = mk_app(PartitionHistory::default());
    let p = p_of(2, 6);
    state.membership.set(view(6, &[(p, "http://127.0.0.1:8081")]));
    state.claims.assign(p, Some(10));
    let (status, headers, body) = get_json(&app, "/notifications/2", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(body["message"], format!("partition {p} is being restored from the log"));
}

#[tokio::test]
async fn not_ready_until_assigned() {
    let (app, _, _) = mk_app(PartitionHistory::default());
    let (status, _, body) = get_json(&app, "/readyz", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["message"].as_str().unwrap().contains("assignment"));
    assert_eq!(get_json(&app, "/healthz", &[]).await.0, StatusCode::OK);
}

/// A member that answers every read with one notification-less list (as a holder would).
async fn fake_holder() -> String {
    let app = Router::new().route(
        "/notifications/{user}",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"notifications": [], "unread": 0, "from": "b"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_read_asks_the_next_holder_when_one_cannot_answer() {
    let (app, state, metrics) = mk_app(PartitionHistory::default());
    let p = p_of(2, 6);
    let holder = fake_holder().await;
    // The old owner (gone: nothing listens on port 9) ranks first, serving; the next one answers.
    let mut v = view(6, &[(p, "http://127.0.0.1:9")]);
    let next = Candidate { address: holder.clone(), member: holder, state: ClaimState::HandingOff };
    v.holders.get_mut(&p).unwrap().push(next);
    state.membership.set(v);
    let (status, _, body) = get_json(&app, "/notifications/2", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"], "b");
    assert_eq!(metrics.read_retries.get(), 1);
    assert_eq!(metrics.forwarded_requests.with_label_values(&["failed"]).get(), 1);
}

#[tokio::test]
async fn a_read_nobody_could_answer_looks_at_the_group_again_once() {
    let (app, state, metrics) = mk_app(PartitionHistory::default());
    let p = p_of(2, 6);
    let holder = fake_holder().await;
    // The view names only a member that is gone; the next view (asked for by the failed read)
    // names the one that took the partition over.
    state.membership.set(view(6, &[(p, "http://127.0.0.1:9")]));
    let membership = state.membership.clone();
    let refresher = tokio::spawn(async move {
        // What the refresher does when asked: a new view.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        membership.set(view(6, &[(p, holder.as_str())]));
    });
    let (status, _, body) = get_json(&app, "/notifications/2", &[]).await;
    refresher.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"], "b");
    assert_eq!(metrics.read_retries.get(), 1);
    assert_eq!(metrics.forwarded_requests.with_label_values(&["failed"]).get(), 1);
}

#[tokio::test]
async fn holders_that_answer_completely_are_asked_before_one_restoring() {
    let (app, state, metrics) = mk_app(PartitionHistory::default());
    let p = p_of(2, 6);
    let holder = fake_holder().await;
    let mut v = view(6, &[]);
    v.holders.insert(
        p,
        vec![
            Candidate { address: holder.clone(), member: holder.clone(), state: ClaimState::Standby },
            Candidate { address: "http://127.0.0.1:9".into(), member: "x".into(), state: ClaimState::Restoring },
        ],
    );
    state.membership.set(v);
    // This member restores the partition too: the standby elsewhere answers first, no wait here.
    state.claims.assign(p, Some(10));
    let (status, _, body) = get_json(&app, "/notifications/2", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(metrics.read_retries.get(), 0);
}

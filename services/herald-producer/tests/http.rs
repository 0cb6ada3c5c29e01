//! Every `/send` status through the real router (no port opened). 200s go through librdkafka's
//! in-process mock cluster; 503s through a producer whose broker does not exist.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herald_auth::{AuthArgs, Authenticator};
use herald_kit::http::{EdgeArgs, HttpMetrics};
use herald_kit::kafka::KafkaArgs;
use herald_model::seed_users;
use herald_producer::app::{AppState, router};
use herald_producer::kafka::Sender;
use herald_producer::metrics::ProducerMetrics;
use herald_producer::users::Directory;
use http_body_util::BodyExt;
use prometheus::Registry;
use rdkafka::mocking::MockCluster;
use tower::ServiceExt;

const TOPIC: &str = "notifications";

/// The producer's API router and the registry its metrics listener would serve.
struct App {
    api: Router,
    registry: Registry,
}

/// An authenticator with the service token `token` (none: open) and an HS256 JWT secret.
fn authenticator(token: Option<&str>) -> Authenticator {
    let Some(token) = token else { return Authenticator::open() };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), token).unwrap();
    std::fs::write(dir.path().join("secret"), JWT_SECRET).unwrap();
    let args = AuthArgs {
        auth_token_file: Some(dir.path().join("token")),
        jwt_secret_file: Some(dir.path().join("secret")),
        ..AuthArgs::default()
    };
    Authenticator::from_args(&args, None).unwrap()
}

const JWT_SECRET: &str = "a-shared-secret-of-at-least-32-bytes";

/// An HS256 JWT for user `sub` with `scope`, valid for a minute.
fn jwt(sub: u64, scope: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub.to_string(), "exp": exp, "scope": scope}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn mk_app(bootstrap: &str, token: Option<&str>, timeout: Duration) -> App {
    let kafka = KafkaArgs { bootstrap_servers: bootstrap.into(), topic: TOPIC.into(), properties: Default::default() };
    let registry = Registry::new();
    let metrics = ProducerMetrics::register(&registry).unwrap();
    let state = AppState {
        directory: Some(Arc::new(Directory::new(seed_users()).unwrap())),
        sender: Arc::new(Sender::new(&kafka, timeout, metrics.client_replacements.clone()).unwrap()),
        auth: Arc::new(authenticator(token)),
        metrics,
        keys: Arc::default(),
    };
    let http = HttpMetrics::register(&registry).unwrap();
    App { api: router(state, http, &EdgeArgs::default()), registry }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: serde_json::Value,
}

async fn post(app: &App, content_type: Option<&str>, auth: Option<&str>, body: impl Into<Body>) -> Answer {
    let mut req = Request::builder().method("POST").uri("/send");
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app.api.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    Answer { status, headers, json }
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const JSON: Option<&str> = Some("application/json");

async fn metrics_text(app: &App) -> String {
    prometheus::TextEncoder::new().encode_to_string(&app.registry.gather()).unwrap()
}

#[tokio::test]
async fn sends_form_and_json_once_acknowledged() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 6, 1).unwrap();
    let app = mk_app(&cluster.bootstrap_servers(), None, Duration::from_secs(10));

    let a = post(&app, FORM, None, "fromID=1&toID=2&message=Hello+Bruno").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["message"], "Notification sent successfully!");
    assert!(a.json["id"].as_str().unwrap().len() == 36);
    let partition = a.json["partition"].as_i64().unwrap();
    // librdkafka's murmur2_random puts the key where the Java partitioner would.
    assert_eq!(partition as i32, herald_model::partition::partition_for_user(&2.into(), 6));
    assert_eq!(a.json["offset"], 0);

    let b = post(&app, JSON, None, r#"{"fromID":3,"toID":2,"message":"Hi again"}"#).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.json);
    // Same recipient, same key, same partition, next offset.
    assert_eq!(b.json["partition"].as_i64().unwrap(), partition);
    assert_eq!(b.json["offset"], 1);

    let text = metrics_text(&app).await;
    assert!(text.contains(r#"herald_producer_notifications_total{outcome="sent"} 2"#), "{text}");
    assert!(text.contains("herald_producer_send_duration_seconds_count 2"), "{text}");
}

#[tokio::test]
async fn client_mistakes_get_4xx_with_a_message() {
    // No broker is needed: none of these reach Kafka.
    let app = mk_app("127.0.0.1:1", None, Duration::from_millis(200));
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        (FORM, b"fromID=1&toID=02&message=x".to_vec(), StatusCode::BAD_REQUEST, "toID must be 1-128 characters"),
        (FORM, b"fromID=1&toID=abc&message=x".to_vec(), StatusCode::NOT_FOUND, "User not found"),
        (JSON, b"{\"fromID\":1}".to_vec(), StatusCode::BAD_REQUEST, "toID is required"),
        (JSON, b"{not json".to_vec(), StatusCode::BAD_REQUEST, "body is not a valid JSON object"),
        (FORM, b"fromID=1&toID=99&message=x".to_vec(), StatusCode::NOT_FOUND, "User not found"),
        (FORM, b"fromID=99&toID=1&message=x".to_vec(), StatusCode::NOT_FOUND, "User not found"),
        (
            Some("text/plain"),
            b"fromID=1&toID=2&message=x".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be",
        ),
        (None, b"fromID=1&toID=2&message=x".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be"),
        (
            FORM,
            format!("fromID=1&toID=2&message={}", "a".repeat(17 * 1024)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 16384 bytes",
        ),
    ];
    for (ct, body, status, message) in cases {
        let a = post(&app, ct, None, body).await;
        assert_eq!(a.status, status, "{ct:?}: {}", a.json);
        assert!(a.json["message"].as_str().unwrap().contains(message), "{}", a.json);
    }
    let text = metrics_text(&app).await;
    assert!(text.contains(r#"herald_producer_notifications_total{outcome="rejected"} 9"#), "{text}");
    assert!(text.contains(r#"herald_producer_notifications_total{outcome="sent"} 0"#), "{text}");
}

#[tokio::test]
async fn a_body_without_content_length_is_still_bounded() {
    let app = mk_app("127.0.0.1:1", None, Duration::from_millis(200));
    let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 1024])));
    let body = Body::from_stream(futures_stream(chunks.collect()));
    let a = post(&app, FORM, None, body).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.json);
}

fn futures_stream(
    items: Vec<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let app = mk_app("127.0.0.1:1", Some("s3cret"), Duration::from_millis(200));
    for auth in [None, Some("Bearer wrong"), Some("Basic s3cret")] {
        let a = post(&app, FORM, auth, "fromID=1&toID=2&message=x").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!a.json.to_string().contains("s3cret"));
    }
    // With the right token the request gets past authentication (and fails on the dead broker).
    let a = post(&app, FORM, Some("Bearer s3cret"), "fromID=1&toID=2&message=x").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    // The service token sends as anyone, but must say as whom.
    let a = post(&app, FORM, Some("Bearer s3cret"), "toID=2&message=x").await;
    assert_eq!((a.status, a.json["message"].as_str()), (StatusCode::BAD_REQUEST, Some("fromID is required")));
}

#[tokio::test]
async fn a_user_sends_as_themselves_unless_the_token_may_send_as_anyone() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let app = mk_app(&cluster.bootstrap_servers(), Some("s3cret"), Duration::from_secs(10));
    let me = format!("Bearer {}", jwt(3, ""));
    // fromID left out: the token's user.
    let a = post(&app, JSON, Some(&me), r#"{"toID":2,"message":"from me"}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = post(&app, FORM, Some(&me), "fromID=3&toID=2&message=still+me").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = post(&app, FORM, Some(&me), "fromID=1&toID=2&message=as+Emma").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.json);
    assert_eq!(a.json["message"], "this token may not send as user 1");
    let any = format!("Bearer {}", jwt(3, "notifications:send:any"));
    let a = post(&app, FORM, Some(&any), "fromID=1&toID=2&message=for+Emma").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let expired = {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3600;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": "3", "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let a = post(&app, FORM, Some(&format!("Bearer {expired}")), "toID=2&message=x").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["message"], "the token has expired");
    assert!(!a.json.to_string().contains(&expired), "the token is echoed");
    let text = metrics_text(&app).await;
    assert!(text.contains(r#"herald_producer_notifications_total{outcome="sent"} 3"#), "{text}");
}

#[tokio::test]
async fn unconfirmed_records_get_503_with_retry_after_within_the_timeout() {
    let app = mk_app("127.0.0.1:1", None, Duration::from_millis(500));
    let start = std::time::Instant::now();
    let a = post(&app, JSON, None, r#"{"fromID":1,"toID":2,"message":"lost?"}"#).await;
    let took = start.elapsed();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.json);
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    assert!(a.json["message"].as_str().unwrap().contains("not sent"), "{}", a.json);
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let text = metrics_text(&app).await;
    assert!(text.contains(r#"herald_producer_notifications_total{outcome="failed"} 1"#), "{text}");
}

#[tokio::test]
async fn readiness_follows_the_broker() {
    let app = mk_app("127.0.0.1:1", None, Duration::from_millis(200));
    let req = Request::builder().uri("/readyz").body(Body::empty()).unwrap();
    let resp = app.api.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let req = Request::builder().uri("/healthz").body(Body::empty()).unwrap();
    assert_eq!(app.api.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_broken_producer_session_answers_503_and_the_client_is_replaced() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let app = mk_app(&cluster.bootstrap_servers(), None, Duration::from_secs(10));
    let ok = post(&app, JSON, None, r#"{"fromID":1,"toID":2,"message":"before"}"#).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);

    // The broker answers the next produce with an error after which the producer id's sequence
    // numbers cannot be trusted.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN]);
    let failed = post(&app, JSON, None, r#"{"fromID":1,"toID":2,"message":"during"}"#).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{}", failed.json);
    let text = metrics_text(&app).await;
    assert!(text.contains("herald_producer_kafka_client_replacements_total 1"), "{text}");

    // The replacement (a new producer id) sends again.
    let after = post(&app, JSON, None, r#"{"fromID":1,"toID":2,"message":"after"}"#).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.json);
    assert!(after.json["offset"].as_i64().unwrap() > ok.json["offset"].as_i64().unwrap());
}

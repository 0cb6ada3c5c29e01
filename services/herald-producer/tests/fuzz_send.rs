//! Property tests of `/send` body parsing, form and JSON: whatever the bytes, the answer is a 200
//! or a 4xx with a JSON `{"message": ...}` — never a 5xx, a panic or a hang. Valid requests
//! round-trip exactly. (Bad-input suite of the reliability issue.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use herald_kit::http::HttpMetrics;
use herald_kit::kafka::KafkaArgs;
use herald_model::{MAX_MESSAGE_BYTES, User, UserId};
use herald_producer::app::{AppState, router};
use herald_producer::kafka::Sender;
use herald_producer::metrics::ProducerMetrics;
use herald_producer::request::{BodyFormat, Recipients, parse};
use herald_producer::users::Directory;
use http_body_util::BodyExt;
use prometheus::Registry;
use proptest::prelude::*;
use rdkafka::mocking::MockCluster;
use tower::ServiceExt;

fn formats() -> impl Strategy<Value = BodyFormat> {
    prop_oneof![Just(BodyFormat::Form), Just(BodyFormat::Json)]
}

/// Bytes that look a little like bodies: JSON and form punctuation, digits, the field names,
/// percent escapes, invalid UTF-8.
fn body_like() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b":".to_vec()),
        Just(b",".to_vec()),
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        Just(b"fromID".to_vec()),
        Just(b"toID".to_vec()),
        Just(b"message".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%FF".to_vec()),
        Just(b"\xC3\x28".to_vec()),
        Just(b"-".to_vec()),
        Just(b"1e400".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        "[0-9]{1,25}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(atoms, 0..40).prop_map(|parts| parts.concat())
}

fn check_parse(format: BodyFormat, body: &[u8]) {
    match parse(format, body) {
        Ok(r) => {
            let zero = UserId::from(0);
            assert!(r.from_id.as_ref().is_none_or(|f| *f > zero) && r.to.all().iter().all(|t| *t > zero));
            assert!(!r.message.is_empty() && r.message.len() <= MAX_MESSAGE_BYTES);
        }
        Err(e) => assert!(!e.0.is_empty() && e.0.len() < 300, "{e:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(format in formats(), body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_parse(format, &body);
    }

    #[test]
    fn body_like_bytes_never_panic(format in formats(), body in body_like()) {
        check_parse(format, &body);
    }

    #[test]
    fn valid_requests_round_trip(from in 1..u64::MAX, to in 1..u64::MAX, message in "\\PC{1,200}") {
        prop_assume!(!message.trim().is_empty());
        // Exactly what was generated comes out, in both formats.
        let json = serde_json::json!({"fromID": from, "toID": to, "message": message}).to_string();
        let r = parse(BodyFormat::Json, json.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e:?}: {json}")))?;
        prop_assert_eq!((r.from_id, r.to, r.message.as_str()), (Some(UserId::from(from)), Recipients::One(UserId::from(to)), message.as_str()));
        let form = format!("fromID={from}&toID={to}&message={}", form_urlencoded(&message));
        let r = parse(BodyFormat::Form, form.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e:?}: {form}")))?;
        prop_assert_eq!((r.from_id, r.to, r.message.as_str()), (Some(UserId::from(from)), Recipients::One(UserId::from(to)), message.as_str()));
    }

    #[test]
    fn numbers_out_of_range_are_rejected(n in prop_oneof![
        Just("0".to_string()), Just("-1".to_string()), Just("1.5".to_string()), Just("1e3".to_string()),
        Just("18446744073709551616".to_string()), Just("99999999999999999999999999".to_string()),
        Just("true".to_string()), Just("[1]".to_string()), Just("{}".to_string()),
    ]) {
        let body = format!(r#"{{"fromID": {n}, "toID": 2, "message": "hi"}}"#);
        let e = parse(BodyFormat::Json, body.as_bytes()).unwrap_err();
        prop_assert!(e.0.contains("fromID"), "{}", e.0);
        // null is no fromID at all (a user token's sub stands in).
        let none = parse(BodyFormat::Json, br#"{"fromID": null, "toID": 2, "message": "hi"}"#).unwrap();
        prop_assert_eq!(none.from_id, None);
    }
}

fn form_urlencoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn deep_nesting_is_skipped_or_refused_and_duplicates_are_client_errors() {
    let nest = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for depth in [1usize, 10, 100, 1_000, 100_000] {
        // In an unknown field: skipped without recursion (no stack overflow), the rest is used.
        let body = format!(r#"{{"fromID": 1, "toID": 2, "message": "hi", "x": {}}}"#, nest(depth));
        let r = parse(BodyFormat::Json, body.as_bytes()).unwrap();
        assert_eq!(
            (r.from_id, r.to, r.message.as_str()),
            (Some(UserId::from(1)), Recipients::One(UserId::from(2)), "hi")
        );
        // Where a value is read: a client error naming the field.
        let body = format!(r#"{{"fromID": {}, "toID": 2, "message": "hi"}}"#, nest(depth));
        let e = parse(BodyFormat::Json, body.as_bytes()).unwrap_err();
        assert!(e.0.contains("fromID") || e.0.contains("recursion limit"), "{depth}: {e:?}");
        // As the whole body: not an object.
        assert!(parse(BodyFormat::Json, nest(depth).as_bytes()).is_err());
    }
    let e = parse(BodyFormat::Json, br#"{"fromID": 1, "fromID": 3, "toID": 2, "message": "hi"}"#).unwrap_err();
    assert!(e.0.contains("fromID"), "{e:?}");
    let e = parse(BodyFormat::Form, b"fromID=1&fromID=3&toID=2&message=hi").unwrap_err();
    assert!(e.0.contains("fromID"), "{e:?}");
}

/// Through the real router, with Kafka answering (librdkafka's mock cluster): any body gets a
/// 200 or a 4xx whose body is `{"message": ...}`, within a bounded time.
#[test]
fn the_router_answers_every_body_with_200_or_a_4xx_json_message() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("notifications", 3, 1).unwrap();
    let users: Vec<User> = (1..=100).map(|id| User { id: id.into(), name: Some(format!("user{id}")) }).collect();
    let app = rt.block_on(async {
        let kafka = KafkaArgs {
            bootstrap_servers: cluster.bootstrap_servers(),
            topic: "notifications".into(),
            properties: Default::default(),
        };
        let registry = Registry::new();
        let metrics = ProducerMetrics::register(&registry).unwrap();
        let state = AppState {
            directory: Some(Arc::new(Directory::new(users).unwrap())),
            sender: Arc::new(Sender::new(&kafka, Duration::from_secs(5), metrics.client_replacements.clone()).unwrap()),
            auth: Arc::new(herald_auth::Authenticator::open()),
            metrics,
            keys: Arc::default(),
        };
        let http = HttpMetrics::register(&registry).unwrap();
        router(state, http, &herald_kit::http::EdgeArgs::default())
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 300, ..ProptestConfig::default() });
    let strategy = (formats(), prop_oneof![4 => body_like(), 4 => valid_body(), 1 => huge_body(), 1 => deep_body()]);
    runner
        .run(&strategy, |(format, body)| {
            let (status, json) = rt.block_on(post(&app, format, body));
            prop_assert!(status == 200 || (400..500).contains(&status), "status {status}: {json}");
            if status != 200 {
                prop_assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
            }
            Ok(())
        })
        .unwrap();
}

/// Bodies over 16 KiB: a valid one with a long message, or filler.
fn huge_body() -> impl Strategy<Value = Vec<u8>> {
    (16 * 1024 + 1..64 * 1024usize, any::<bool>()).prop_map(|(len, valid)| {
        if valid {
            serde_json::json!({"fromID": 1, "toID": 2, "message": "m".repeat(len)}).to_string().into_bytes()
        } else {
            vec![b'a'; len]
        }
    })
}

/// JSON nested 8,000 deep, in an object field or as the whole body.
fn deep_body() -> impl Strategy<Value = Vec<u8>> {
    (7_900..8_100usize, any::<bool>()).prop_map(|(depth, in_field)| {
        let nest = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        if in_field {
            format!(r#"{{"fromID": 1, "toID": 2, "message": "hi", "x": {nest}}}"#).into_bytes()
        } else {
            nest.into_bytes()
        }
    })
}

fn valid_body() -> impl Strategy<Value = Vec<u8>> {
    (1u64..=100, 1u64..=100, "[a-zA-Z0-9 ]{1,50}").prop_map(|(from, to, message)| {
        serde_json::json!({"fromID": from, "toID": to, "message": message}).to_string().into_bytes()
    })
}

async fn post(app: &Router, format: BodyFormat, body: Vec<u8>) -> (u16, serde_json::Value) {
    let content_type = match format {
        BodyFormat::Form => "application/x-www-form-urlencoded",
        BodyFormat::Json => "application/json",
    };
    let req = Request::builder()
        .method("POST")
        .uri("/send")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .expect("no answer in 10 s")
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

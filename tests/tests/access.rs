//! Access control with the real producer and consumers on a real broker: who may read and send
//! what with JWTs (HS256 with a secret file, ES256 with a public key) and the service token;
//! every way a token is refused; forwarded reads between consumers under the peer token; what a
//! spoofed forward or a claims request without it gets; and that a peer whose claims name a
//! foreign host never sends reads there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald_model::partition::partition_for_user;
use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::jwt::{Signer, claims};
use herald_tests::{GROUP_TIMEOUTS, Setup, metrics, scrape, wait_for, wait_ready};

const READY: Duration = Duration::from_secs(60);
const AUDIENCE: &str = "herald";
const SERVICE_TOKEN: &str = "the-service-token-0123456789";
const PEER_TOKEN: &str = "the-peer-token-abcdefghijklmnop";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(signer: &Signer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwt"), signer.verifier().1).unwrap();
        std::fs::write(dir.path().join("token"), format!("{SERVICE_TOKEN}\n")).unwrap();
        std::fs::write(dir.path().join("peer"), PEER_TOKEN).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The auth env of both services.
    fn env(&self, signer: &Signer) -> Vec<(&'static str, String)> {
        vec![
            (signer.verifier().0, self.path("jwt")),
            ("HERALD_AUTH_TOKEN_FILE", self.path("token")),
            ("HERALD_JWT_ISSUER", "https://id.example".into()),
            ("HERALD_JWT_AUDIENCE", AUDIENCE.into()),
        ]
    }
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

async fn send(http: &Http, producer: &str, auth: Option<&str>, body: serde_json::Value) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, String)> = auth.map(bearer).into_iter().collect();
    let a = http.post_json_with(&format!("{producer}/send"), &body, &headers).await.unwrap();
    (a.status.as_u16(), a.json)
}

async fn read(http: &Http, consumer: &str, user: u64, auth: Option<&str>) -> (u16, serde_json::Value, String) {
    let headers: Vec<(&str, String)> = auth.map(bearer).into_iter().collect();
    let a = http.get_with(&format!("{consumer}/notifications/{user}"), &headers).await.unwrap();
    let www = a.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (a.status.as_u16(), a.json, www)
}

async fn access_rules_hold(signer: Signer) {
    let setup = Setup::new(Storage::Memory, 6, 8).await;
    let files = Files::new(&signer);
    let http = Http::new();
    let producer = setup.producer(&files.env(&signer));
    let mut consumer_env = files.env(&signer);
    consumer_env.push(("HERALD_PEER_TOKEN_FILE", files.path("peer")));
    let consumers = [setup.consumer(&consumer_env), setup.consumer(&consumer_env)];
    wait_ready(&http, &producer, READY).await;
    for c in &consumers {
        wait_ready(&http, c, READY).await;
    }
    let token = |sub: u64, scope: &str| signer.sign(&claims(sub, scope, AUDIENCE));
    let user = |id: u64| token(id, "");

    // Sends: as oneself (with and without fromID), not as another, unless send:any; the service
    // token as anyone.
    let mut sent: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for to in 1..=6u64 {
        let (status, json) =
            send(&http, &producer.url, Some(&user(3)), serde_json::json!({"toID": to, "message": format!("hi {to}")}))
                .await;
        assert_eq!(status, 200, "{json}");
        sent.entry(to).or_default().push(json["id"].as_str().unwrap().to_string());
    }
    let (status, json) =
        send(&http, &producer.url, Some(&user(3)), serde_json::json!({"fromID": 3, "toID": 4, "message": "me again"}))
            .await;
    assert_eq!(status, 200, "{json}");
    sent.entry(4).or_default().push(json["id"].as_str().unwrap().to_string());
    let (status, json) =
        send(&http, &producer.url, Some(&user(3)), serde_json::json!({"fromID": 1, "toID": 4, "message": "as Emma"}))
            .await;
    assert_eq!((status, json["message"].as_str()), (403, Some("this token may not send as user 1")));
    let (status, json) = send(
        &http,
        &producer.url,
        Some(&token(3, "notifications:send:any")),
        serde_json::json!({"fromID": 1, "toID": 4, "message": "for Emma"}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    sent.entry(4).or_default().push(json["id"].as_str().unwrap().to_string());
    let (status, json) = send(
        &http,
        &producer.url,
        Some(SERVICE_TOKEN),
        serde_json::json!({"fromID": 2, "toID": 5, "message": "service"}),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    sent.entry(5).or_default().push(json["id"].as_str().unwrap().to_string());

    // Refused tokens: 401 with WWW-Authenticate and what is wrong, never the token.
    let expired = {
        let mut c = claims(3, "", AUDIENCE);
        c["exp"] = serde_json::json!(1);
        signer.sign(&c)
    };
    let other = match &signer {
        Signer::Hs256(_) => Signer::hs256(),
        Signer::Es256 { .. } => Signer::es256(),
    };
    let forged = other.sign(&claims(3, "", AUDIENCE));
    let wrong_audience = signer.sign(&claims(3, "", "someone-else"));
    for (auth, message) in [
        (None, "missing bearer token"),
        (Some(expired.as_str()), "the token has expired"),
        (Some(forged.as_str()), "the token's signature is invalid"),
        (Some(wrong_audience.as_str()), "the token's audience is not accepted"),
    ] {
        let (status, json) = send(&http, &producer.url, auth, serde_json::json!({"toID": 4, "message": "x"})).await;
        assert_eq!(status, 401, "send {message}: {json}");
        assert!(json["message"].as_str().unwrap().starts_with(message), "{json}");
        for c in &consumers {
            let (status, json, www) = read(&http, &c.url, 3, auth).await;
            assert_eq!((status, www.as_str()), (401, "Bearer"), "read {message}: {json}");
            assert!(json["message"].as_str().unwrap().starts_with(message), "{json}");
            if let Some(token) = auth {
                assert!(!json.to_string().contains(token), "the token was echoed");
            }
        }
    }

    // Reads: one's own on either consumer (one of them forwards), not another's unless read:any;
    // the service token anyone's. Every acknowledged notification is there.
    for (&to, ids) in &sent {
        for c in &consumers {
            let got = wait_for(&format!("user {to} on {}", c.url), Duration::from_secs(30), || async {
                let (status, json, _) = read(&http, &c.url, to, Some(&user(to))).await;
                (status == 200 && json["notifications"].as_array()?.len() == ids.len()).then_some(json)
            })
            .await;
            let got: Vec<&str> =
                got["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
            assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
    for c in &consumers {
        let (status, json, _) = read(&http, &c.url, 4, Some(&user(3))).await;
        assert_eq!((status, json["message"].as_str()), (403, Some("this token may not read user 4's notifications")));
        let (status, _, _) = read(&http, &c.url, 4, Some(&token(3, "notifications:read:any"))).await;
        assert_eq!(status, 200);
        let (status, _, _) = read(&http, &c.url, 4, Some(SERVICE_TOKEN)).await;
        assert_eq!(status, 200);
    }
    let forwarded: f64 = {
        let mut total = 0.0;
        for c in &consumers {
            total +=
                metrics::sum(&scrape(&http, c).await, "herald_consumer_forwarded_requests_total", &[("outcome", "ok")]);
        }
        total
    };
    assert!(forwarded > 0.0, "no read was forwarded: the test did not cover forwarding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens_from_a_secret_file() {
    access_rules_hold(Signer::hs256()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_from_a_public_key() {
    access_rules_hold(Signer::es256()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_peer_token_a_forward_or_a_claims_request_is_refused_and_costs_nothing() {
    let setup = Setup::new(Storage::Memory, 3, 4).await;
    let signer = Signer::hs256();
    let files = Files::new(&signer);
    let http = Http::new();
    let mut env = files.env(&signer);
    env.push(("HERALD_PEER_TOKEN_FILE", files.path("peer")));
    let consumer = setup.consumer(&env);
    wait_ready(&http, &consumer, READY).await;
    let refreshes = || async {
        metrics::sum(&scrape(&http, &consumer).await, "herald_consumer_membership_refresh_requests_total", &[])
    };
    let before = refreshes().await;
    let user_token = signer.sign(&claims(2, "", AUDIENCE));
    for _ in 0..50 {
        for auth in [None, Some(SERVICE_TOKEN), Some(user_token.as_str())] {
            let mut headers = vec![("x-herald-forwarded-by", "http://127.0.0.1:1".to_string())];
            headers.extend(auth.map(bearer));
            let a = http.get_with(&format!("{}/notifications/2", consumer.url), &headers).await.unwrap();
            assert_eq!(a.status, 401, "{}", a.text);
        }
    }
    assert_eq!(refreshes().await, before, "a spoofed forward made the consumer look at its peers");
    for auth in [None, Some(SERVICE_TOKEN), Some(user_token.as_str())] {
        let headers: Vec<(&str, String)> = auth.map(bearer).into_iter().collect();
        let a = http.get_with(&format!("{}/internal/claims", consumer.url), &headers).await.unwrap();
        assert_eq!(a.status, 401, "{:?}: {}", auth.map(|_| "token"), a.text);
    }
    let a = http.get_with(&format!("{}/internal/claims", consumer.url), &[bearer(PEER_TOKEN)]).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["partitions"].as_array().is_some());
    // Neither token shows in the consumer's log.
    let log = consumer.log();
    assert!(!log.is_empty());
    assert!(!log.contains(PEER_TOKEN) && !log.contains(SERVICE_TOKEN) && !log.contains(&user_token));
}

/// A fake peer that claims `partitions` under the URL `claimed`, and counts the requests any
/// listener of its own gets.
async fn fake_peer(claimed: String, partitions: Vec<i32>) -> (u16, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = served.clone();
    let app = axum::Router::new().route(
        "/internal/claims",
        axum::routing::get(move || {
            count.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({"url": claimed.clone(), "partitions": partitions.clone()});
            async move { axum::Json(body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_claims_a_foreign_host_never_gets_reads_sent_there() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let setup = Setup::new(Storage::Memory, 2, 20).await;
    // A group member that is not Herald takes some partitions, so that the consumer under test
    // must forward the reads of their users.
    let mut member = rdkafka::ClientConfig::new();
    member
        .set("bootstrap.servers", setup.broker.bootstrap())
        .set("group.id", &setup.group)
        .set("partition.assignment.strategy", "cooperative-sticky");
    for kv in GROUP_TIMEOUTS.split(',') {
        let (k, v) = kv.split_once('=').unwrap();
        member.set(k, v);
    }
    let member: Arc<BaseConsumer> = Arc::new(member.create().unwrap());
    member.subscribe(&[&setup.topic]).unwrap();
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let (member, polling) = (member.clone(), polling.clone());
        std::thread::spawn(move || {
            while polling.load(Ordering::SeqCst) {
                let _ = member.poll(Duration::from_millis(100));
            }
        })
    };
    // A listener on another loopback address: the host the fake peer names.
    let foreign = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let foreign_port = foreign.local_addr().unwrap().port();
    let foreign_hits = Arc::new(AtomicUsize::new(0));
    {
        let hits = foreign_hits.clone();
        tokio::spawn(async move {
            while let Ok((_stream, _)) = foreign.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let (fake_port, claims_served) = fake_peer(format!("http://127.0.0.2:{foreign_port}"), vec![0, 1]).await;
    let http = Http::new();
    let consumer = setup.consumer(&[("HERALD_PEERS", format!("127.0.0.1:{fake_port}"))]);
    wait_ready(&http, &consumer, READY).await;
    // Wait until the group has split: the consumer holds one partition, the other member the other.
    let held = wait_for("the group to split the partitions", Duration::from_secs(60), || async {
        let a = http.get(&format!("{}/internal/claims", consumer.url)).await.ok()?;
        let held: Vec<i64> = a.json["partitions"].as_array()?.iter().filter_map(|p| p.as_i64()).collect();
        (held.len() == 1).then_some(held[0] as i32)
    })
    .await;
    let user = (1..=20u64).find(|u| partition_for_user(&(*u).into(), 2) != held).unwrap();
    wait_for("the fake peer asked for its claims", Duration::from_secs(10), || async {
        (claims_served.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    for _ in 0..5 {
        let a = http.get(&format!("{}/notifications/{user}", consumer.url)).await.unwrap();
        assert_eq!(a.status, 503, "{}", a.text);
        assert!(a.json["message"].as_str().unwrap().contains("could not be reached"), "{}", a.text);
    }
    assert_eq!(foreign_hits.load(Ordering::SeqCst), 0, "a read went to the host the claims named");
    polling.store(false, Ordering::SeqCst);
    poller.join().unwrap();
}

//! Open user ids end to end, against a real broker: the app's own string ids (at the 128-byte
//! limit, with every allowed punctuation character, e-mail addresses, UUIDs) next to numeric
//! ones — sent, read from every consumer, paged, streamed, marked read and restored after every
//! consumer restarted; a JWT with a string `sub` sending as itself; the directory on and off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::jwt::Signer;
use herald_tests::reads::start_consumers;
use herald_tests::sse;
use herald_tests::{Setup, wait_ready};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(60);

/// The ids under test, as a client writes them in JSON (a number stays a number).
fn ids() -> Vec<Value> {
    let longest = format!("{}12345678", "a.b_c-d~e:f@g+h".repeat(8));
    assert_eq!(longest.len(), 128);
    vec![
        json!(longest),
        json!("alice@example.com"),
        json!("u_8f3k2"),
        json!("550e8400-e29b-41d4-a716-446655440000"),
        json!("a..b"),
        json!("~"),
        json!(7),
    ]
}

/// How an id is written in a path.
fn path_id(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn inbox(http: &Http, consumer: &str, id: &Value, query: &str) -> Value {
    let a = http.get(&format!("{consumer}/notifications/{}{query}", path_id(id))).await.unwrap();
    assert_eq!(a.status, 200, "{}: {}", path_id(id), a.text);
    a.json
}

fn item_ids(answer: &Value) -> Vec<String> {
    answer["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

/// Every one of `consumers` answers for every id: complete (`sent`), with the ids as given (no
/// directory: the id alone), each sender as `senders` says; `read_user`'s notifications all
/// read, everyone else's unread.
async fn check_everywhere(
    http: &Http,
    consumers: &[String],
    sent: &BTreeMap<String, Vec<String>>,
    senders: &BTreeMap<String, Value>,
    read_user: Option<&str>,
    when: &str,
) {
    for c in consumers {
        for to in ids() {
            let answer = inbox(http, c, &to, "").await;
            let mut got = item_ids(&answer);
            let mut want = sent[&path_id(&to)].clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{to} on {c} {when}");
            let read = read_user == Some(path_id(&to).as_str());
            for n in answer["notifications"].as_array().unwrap() {
                assert_eq!(n["to"], json!({"id": to}), "no directory: the id alone, as given");
                assert_eq!(n["from"], senders[n["id"].as_str().unwrap()]);
                assert_eq!(n["read"], json!(read), "{to} on {c} {when}");
            }
            let unread = if read { 0 } else { want.len() };
            assert_eq!(answer["unread"], json!(unread), "{to} on {c} {when}: {answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn string_ids_are_sent_read_paged_streamed_marked_and_restored() {
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let http = Http::new();
    let producer = s.open_producer(&[]);
    wait_ready(&http, &producer, READY).await;
    let mut consumers = start_consumers(&http, &s, 2).await;

    // Recipient i gets i + 1 notifications from an app id; the sender has no name (no directory,
    // no token).
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Each notification's sender as it is served.
    let mut senders: BTreeMap<String, Value> = BTreeMap::new();
    for (i, to) in ids().iter().enumerate() {
        for k in 0..=i {
            let a = http.send_between(&producer.url, "billing.app", to, &format!("m{i}-{k}")).await.unwrap();
            assert_eq!(a.status, 200, "{to}: {}", a.text);
            sent.entry(path_id(to)).or_default().push(a.json["id"].as_str().unwrap().to_string());
            senders.insert(a.json["id"].as_str().unwrap().to_string(), json!({"id": "billing.app"}));
        }
    }

    // Every consumer answers for every id, complete, with the ids as they were given.
    let urls = |cs: &[herald_tests::process::Service]| cs.iter().map(|c| c.url.clone()).collect::<Vec<_>>();
    check_everywhere(&http, &urls(&consumers), &sent, &senders, None, "").await;

    // Pages of two, following the cursor, add up to the whole inbox (the 128-byte id has 1).
    let paged = ids()[5].clone();
    let mut url_query = "?limit=2".to_string();
    let mut pages = Vec::new();
    loop {
        let answer = inbox(&http, &consumers[1].url, &paged, &url_query).await;
        pages.extend(item_ids(&answer));
        match answer["next"].as_str() {
            Some(next) => url_query = format!("?limit=2&before={next}"),
            None => break,
        }
    }
    let mut want = sent[&path_id(&paged)].clone();
    pages.sort();
    want.sort();
    assert_eq!(pages, want);

    // A read marker for the longest id.
    let longest = ids()[0].clone();
    let a = http
        .post_json_with(
            &format!("{}/notifications/{}/read", producer.url, path_id(&longest)),
            &json!({"all": true}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    check_everywhere(&http, &urls(&consumers), &sent, &senders, Some(&path_id(&longest)), "after the marker").await;

    // A live stream for an e-mail address.
    let alice = ids()[1].clone();
    let mut stream = sse::connect(&format!("{}/notifications/{}/stream", consumers[0].url, path_id(&alice)), None)
        .await
        .expect("stream opens");
    let a = http.send_between(&producer.url, 7, &alice, "live").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let live_id = a.json["id"].as_str().unwrap().to_string();
    sent.get_mut(&path_id(&alice)).unwrap().push(live_id.clone());
    senders.insert(live_id.clone(), json!({"id": 7}));
    loop {
        let event = stream.next(Duration::from_secs(15)).await.expect("the live notification").expect("open");
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else { continue };
        if data["id"] == json!(live_id) {
            assert_eq!((&data["from"], &data["to"]), (&json!({"id": 7}), &json!({"id": "alice@example.com"})));
            break;
        }
    }
    drop(stream);

    // Every consumer replaced: the new ones rebuild every inbox, read states included, from the log.
    for c in &mut consumers {
        c.kill9();
    }
    let replacements = start_consumers(&http, &s, 2).await;
    check_everywhere(&http, &urls(&replacements), &sent, &senders, Some(&path_id(&longest)), "after the restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_with_a_string_sub_sends_as_itself_with_its_name_and_reads_only_its_inbox() {
    let signer = Signer::hs256();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt"), signer.verifier().1).unwrap();
    let env = vec![
        (signer.verifier().0, dir.path().join("jwt").display().to_string()),
        ("HERALD_JWT_ISSUER", "https://id.example".to_string()),
        ("HERALD_JWT_AUDIENCE", "herald".to_string()),
    ];
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let http = Http::new();
    let producer = s.open_producer(&env);
    let consumer = s.consumer(&env);
    wait_ready(&http, &producer, READY).await;
    wait_ready(&http, &consumer, READY).await;
    let token = |sub: &str, name: Option<&str>| {
        let mut claims = herald_tests::jwt::claims(0, "", "herald");
        claims["sub"] = json!(sub);
        if let Some(name) = name {
            claims["name"] = json!(name);
        }
        vec![("authorization", format!("Bearer {}", signer.sign(&claims)))]
    };
    let send = |auth: Vec<(&'static str, String)>, body: Value| {
        let (http, url) = (http.clone(), format!("{}/send", producer.url));
        async move { http.post_json_with(&url, &body, &auth).await.unwrap() }
    };

    let alice = token("alice@example.com", Some("Alice"));
    let a = send(alice.clone(), json!({"toID": "bob", "message": "hi Bob"})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(alice.clone(), json!({"fromID": "alice@example.com", "toID": "bob", "message": "again"})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(alice.clone(), json!({"fromID": "carol", "toID": "bob", "message": "as Carol"})).await;
    assert_eq!(a.status, 403, "{}", a.text);
    // A sub that breaks the id rule is no user at all.
    let a = send(token("02", None), json!({"toID": "bob", "message": "x"})).await;
    assert_eq!(a.status, 401, "{}", a.text);

    let bob_url = format!("{}/notifications/bob", consumer.url);
    let a = http.get_with(&bob_url, &alice).await.unwrap();
    assert_eq!(a.status, 403, "alice may not read bob's inbox: {}", a.text);
    let a = http.get_with(&bob_url, &token("bob", None)).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let items = a.json["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for n in items {
        // The name from the sender's own token; the recipient's is not known.
        assert_eq!(n["from"], json!({"id": "alice@example.com", "name": "Alice"}));
        assert_eq!(n["to"], json!({"id": "bob"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_directory_only_its_users_send_and_receive_with_their_names() {
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let users = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(users.path(), r#"[{"id":"alice","name":"Alice"},{"id":2,"name":"Bruno"}]"#).unwrap();
    let http = Http::new();
    let producer = s.open_producer(&[("HERALD_USERS_FILE", users.path().display().to_string())]);
    let consumers = start_consumers(&http, &s, 1).await;
    wait_ready(&http, &producer, READY).await;

    let a = http.send_between(&producer.url, "alice", 2, "hi").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let a = http.send_between(&producer.url, "alice", "mallory", "hi").await.unwrap();
    assert_eq!((a.status.as_u16(), a.json["message"].as_str()), (404, Some("User not found")));
    let a = http.send_between(&producer.url, "alice", "02", "hi").await.unwrap();
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.json["message"].as_str().unwrap().starts_with("toID must be 1-128 characters"), "{}", a.text);

    let answer = inbox(&http, &consumers[0].url, &json!(2), "").await;
    let items = answer["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["from"], json!({"id": "alice", "name": "Alice"}));
    assert_eq!(items[0]["to"], json!({"id": 2, "name": "Bruno"}));
}

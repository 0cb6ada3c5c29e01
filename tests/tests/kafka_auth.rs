//! Kafka credentials end to end: a nisshi broker that requires SASL SCRAM-SHA-512, the real
//! producer and consumer reading their passwords from files (as the operator mounts a Strimzi
//! KafkaUser Secret), and a wrong password that gets 503s, never a 200, and stays out of the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_tests::broker::Broker;
use herald_tests::http::Http;
use herald_tests::process::Service;
use herald_tests::{TEST_CONSUMER_PROPERTIES, ids_for, unique, wait_for, wait_ready};

const READY: Duration = Duration::from_secs(60);
const PRODUCER_PASSWORD: &str = "pr0ducer-s3cret";
const CONSUMER_PASSWORD: &str = "c0nsumer-s3cret";

/// The env of a service authenticating as `user` with the password in `file`; `extra` are more
/// properties.
fn sasl_env(
    broker: &Broker,
    topic: &str,
    user: &str,
    file: &std::path::Path,
    extra: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("HERALD_TOPIC", topic.to_string()),
        (
            "HERALD_KAFKA_PROPERTIES",
            format!("security.protocol=SASL_PLAINTEXT,sasl.mechanism=SCRAM-SHA-512,sasl.username={user}{extra}"),
        ),
        ("HERALD_KAFKA_SASL_PASSWORD_FILE", file.display().to_string()),
    ]
}

fn password_file(dir: &tempfile::TempDir, name: &str, password: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    // As a Secret written by hand often is: with a trailing line break.
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_authenticate_with_passwords_from_files() {
    let topic = unique("secured");
    let broker = Broker::start_with_sasl_users(
        &[("social-producer", PRODUCER_PASSWORD), ("social-consumer", CONSUMER_PASSWORD)],
        &[(&topic, 3)],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let http = Http::new();

    let producer_pw = password_file(&dir, "producer", PRODUCER_PASSWORD);
    let producer =
        Service::start("herald-producer", &[], &sasl_env(&broker, &topic, "social-producer", &producer_pw, ""));
    wait_ready(&http, &producer, READY).await;
    let consumer_pw = password_file(&dir, "consumer", CONSUMER_PASSWORD);
    let group_timeouts = format!(",{TEST_CONSUMER_PROPERTIES}");
    let mut consumer_env = sasl_env(&broker, &topic, "social-consumer", &consumer_pw, &group_timeouts);
    consumer_env.push(("HERALD_GROUP_ID", unique("group")));
    let consumer = Service::start("herald-consumer", &[], &consumer_env);
    wait_ready(&http, &consumer, READY).await;

    let sent = http.send_form(&producer.url, 1, 2, "over SCRAM").await.unwrap();
    assert_eq!(sent.status, 200, "{}", sent.text);
    let id = sent.json["id"].as_str().unwrap().to_string();
    wait_for("the consumer to store the notification", READY, || {
        let (http, url, id) = (http.clone(), consumer.url.clone(), id.clone());
        async move {
            let a = http.get(&format!("{url}/notifications/2")).await.ok()?;
            (a.status == 200).then_some(())?;
            ids_for(&http, &url, 2).await.contains(&id).then_some(())
        }
    })
    .await;
    for (service, started) in [(&producer, "producer listening"), (&consumer, "consumer authentication")] {
        let log = service.log();
        // The log that is searched is the service's log: it says the service started.
        assert!(log.contains(started), "{started:?} is not in the log:\n{log}");
        assert!(!log.contains(PRODUCER_PASSWORD) && !log.contains(CONSUMER_PASSWORD), "a password is in a log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_503_and_never_shows() {
    let topic = unique("secured");
    let broker = Broker::start_with_sasl_users(&[("social-producer", PRODUCER_PASSWORD)], &[(&topic, 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let http = Http::new();
    let wrong = "n0t-the-passw0rd";
    let mut env = sasl_env(&broker, &topic, "social-producer", &password_file(&dir, "producer", wrong), "");
    env.push(("HERALD_SEND_TIMEOUT", "1s".into()));
    let producer = Service::start("herald-producer", &[], &env);
    // Up (alive) but not ready: the broker refuses the credentials.
    wait_for("the producer to answer /healthz", READY, || {
        let (http, url) = (http.clone(), producer.url.clone());
        async move { http.get(&format!("{url}/healthz")).await.ok().filter(|a| a.status == 200).map(|_| ()) }
    })
    .await;
    let ready = http.get(&format!("{}/readyz", producer.url)).await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text);
    for _ in 0..3 {
        let a = http.send_json(&producer.url, 1, 2, "refused").await.unwrap();
        assert_eq!(a.status, 503, "{}", a.text);
        assert!(a.json["message"].is_string());
    }
    wait_for("the authentication failure in the log", READY, || {
        let log = producer.log();
        async move { log.contains("Authentication").then_some(()) }
    })
    .await;
    assert!(!producer.log().contains(wrong), "the password is in the log");
}

//! Every metric the dashboard and the alert rules use is one the services export: the names are
//! read from `deploy/monitoring/` and looked up in the real producer's and consumer's `/metrics`
//! after traffic (the operator's names are checked the same way in
//! `operator/herald-operator/tests/reconcile.rs`, against its registry after mocked reconciles).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::{Setup, metrics, scrape, wait_for, wait_ready};

/// Metric names in PromQL text: `herald_…` identifiers and `up`.
fn names_in(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            let end = (i..bytes.len())
                .find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_'))
                .unwrap_or(bytes.len());
            let word = &promql[i..end];
            // A label name inside {...} or by (...) is followed by = or is a grouping label; metric
            // names are the herald_ ones and up.
            if word.starts_with("herald_") || word == "up" {
                names.insert(word.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Every metric name the rules and the dashboard query.
fn referenced() -> BTreeSet<String> {
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("deploy/monitoring/herald.rules.yaml")).unwrap())
            .unwrap();
    let mut names = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            names.extend(names_in(rule["expr"].as_str().unwrap()));
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/monitoring/herald-dashboard.json")).unwrap())
            .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            names.extend(names_in(target["expr"].as_str().unwrap()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = variable["definition"].as_str() {
            names.extend(names_in(q));
        }
    }
    names
}

/// Sample names in Prometheus text (histograms show as `_bucket`, `_sum`, `_count`).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_name_scanner_finds_metrics_not_labels_or_functions() {
    let found = names_in(
        r#"sum by (namespace, pipeline) (rate(herald_consumer_records_total{outcome="invalid"}[5m])) > 0 unless up{component="consumer"}"#,
    );
    assert_eq!(found, BTreeSet::from(["herald_consumer_records_total".to_string(), "up".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_in_the_dashboard_and_rules_is_exported() {
    let referenced = referenced();
    assert!(referenced.len() >= 15, "{referenced:?}");
    let unknown: Vec<_> = referenced
        .iter()
        .filter(|n| {
            !(*n == "up"
                || ["herald_producer_", "herald_consumer_", "herald_http_", "herald_operator_"]
                    .iter()
                    .any(|p| n.starts_with(p)))
        })
        .collect();
    assert!(unknown.is_empty(), "names no Herald component could export: {unknown:?}");

    // The data plane, with one notification through it.
    let s = Setup::new(Storage::Memory, 2, 4).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    let consumer = s.consumer(&[]);
    wait_ready(&http, &producer, Duration::from_secs(90)).await;
    wait_ready(&http, &consumer, Duration::from_secs(90)).await;
    let a = http.send_form(&producer.url, 1, 2, "hello").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let text = wait_for("the notification stored and committed", Duration::from_secs(60), || async {
        let text = scrape(&http, &consumer).await;
        (metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "stored")]) == 1.0
            && metrics::count(&text, "herald_consumer_committed_offset", &[]) > 0
            && metrics::count(&text, "herald_consumer_lag", &[]) > 0)
            .then_some(text)
    })
    .await;
    let _ = http.get(&format!("{}/notifications/2", consumer.url)).await.unwrap();
    let mut names = exported(&text);
    names.extend(exported(&scrape(&http, &consumer).await));
    names.extend(exported(&scrape(&http, &producer).await));

    let missing: Vec<_> = referenced
        .iter()
        // A series that exists only on a consumer holding standbys (`tests/tests/scaling.rs` checks it).
        .filter(|n| !n.starts_with("herald_operator_") && *n != "up" && *n != "herald_consumer_standby_lag")
        .filter(|n| !names.contains(*n))
        .collect();
    assert!(missing.is_empty(), "used in deploy/monitoring/ but not exported: {missing:?}\nexported: {names:?}");
}

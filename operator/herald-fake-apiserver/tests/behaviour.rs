//! The stand-in answers as the API server does, through a real kube::Client and kube-runtime's
//! watcher.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use herald_fake_apiserver::{Call, FakeApiServer, Fault, Simulation};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};

fn config_map(name: &str, data: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "apps", "labels": {"team": "a"}}, "data": {"k": data}})
}

async fn next_applied(
    stream: &mut (impl futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin),
) -> Event<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let e @ (Event::Apply(_) | Event::Delete(_)) = stream.next().await.unwrap().unwrap() {
                return e;
            }
        }
    })
    .await
    .expect("an event within 5 s")
}

#[tokio::test]
async fn a_watcher_sees_changes_and_nothing_for_a_write_that_changes_nothing() {
    let server = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "apps");
    api.create(&PostParams::default(), &serde_json::from_value(config_map("a", "1")).unwrap()).await.unwrap();
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list.
    let mut seen = Vec::new();
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(2), events.next()).await {
        if let Event::InitDone = e {
            break;
        }
        if let Event::InitApply(cm) = e {
            seen.push(cm.metadata.name.unwrap());
        }
    }
    assert_eq!(seen, ["a"]);
    let pp = PatchParams::apply("test").force();
    let applied = api.patch("a", &pp, &Patch::Apply(config_map("a", "2"))).await.unwrap();
    let Event::Apply(cm) = next_applied(&mut events).await else { panic!("expected an apply") };
    assert_eq!(cm.data.unwrap()["k"], "2");
    let rv = applied.metadata.resource_version.clone();
    // The same apply again: no new version, no event.
    let again = api.patch("a", &pp, &Patch::Apply(config_map("a", "2"))).await.unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), async {
            loop {
                if let Event::Apply(_) | Event::Delete(_) = events.next().await.unwrap().unwrap() {
                    return;
                }
            }
        })
        .await
        .is_err(),
        "an event for a write that changed nothing"
    );
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(matches!(next_applied(&mut events).await, Event::Delete(_)));
}

#[tokio::test]
async fn generation_status_finalizers_and_garbage_collection() {
    let server = FakeApiServer::new();
    server.simulate(Simulation { deployments_become_ready: false, strimzi_reconciles: false });
    let api: Api<Deployment> = Api::namespaced(server.client(), "apps");
    let deployment = |replicas: i32, label: &str| {
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "apps", "labels": {"l": label}, "finalizers": ["x/y"]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}})
    };
    let pp = PatchParams::apply("test").force();
    let d = api.patch("d", &pp, &Patch::Apply(deployment(1, "one"))).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = api.patch("d", &pp, &Patch::Apply(deployment(1, "two"))).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1), "a label change is not a spec change");
    let d = api.patch("d", &pp, &Patch::Apply(deployment(2, "two"))).await.unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    // Status only through the subresource.
    let mut with_status = deployment(2, "two");
    with_status["status"] = serde_json::json!({"readyReplicas": 2});
    let d = api.patch("d", &pp, &Patch::Apply(&with_status)).await.unwrap();
    assert!(d.status.is_none(), "the main endpoint ignores status");
    let d = api.patch_status("d", &pp, &Patch::Apply(&with_status)).await.unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(2));
    assert_eq!(d.metadata.generation, Some(2));
    // A dependent, owned by d.
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "apps");
    let mut owned = config_map("owned", "1");
    owned["metadata"]["ownerReferences"] = serde_json::json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": d.metadata.uid.clone().unwrap()}]);
    cms.create(&PostParams::default(), &serde_json::from_value(owned).unwrap()).await.unwrap();
    // Deleting waits for the finalizer.
    api.delete("d", &DeleteParams::default()).await.unwrap();
    let terminating = api.get("d").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert!(cms.get_opt("owned").await.unwrap().is_some());
    let remove = serde_json::json!([{"op": "remove", "path": "/metadata/finalizers/0"}]);
    api.patch("d", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(remove).unwrap())).await.unwrap();
    assert!(api.get_opt("d").await.unwrap().is_none());
    assert!(cms.get_opt("owned").await.unwrap().is_none(), "the dependent was collected");
}

#[tokio::test]
async fn pages_discovery_faults_and_calls() {
    let server = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "apps");
    for i in 0..7 {
        cms.create(&PostParams::default(), &serde_json::from_value(config_map(&format!("c{i}"), "x")).unwrap())
            .await
            .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().unwrap();
    let second = cms.list(&ListParams::default().limit(10).continue_token(&token)).await.unwrap();
    assert_eq!(second.items.len(), 4);
    assert!(second.metadata.continue_.is_none());
    assert_eq!(cms.list(&ListParams::default().labels("team=a")).await.unwrap().items.len(), 7);
    assert_eq!(cms.list(&ListParams::default().labels("team=b")).await.unwrap().items.len(), 0);

    let client = server.client();
    assert!(kube::discovery::group(&client, "kafka.strimzi.io").await.is_err());
    server.serve_strimzi();
    let group = kube::discovery::group(&client, "kafka.strimzi.io").await.unwrap();
    assert!(group.versioned_resources("v1beta2").iter().any(|(ar, _)| ar.kind == "KafkaTopic"));

    server.inject(Fault { verb: "delete".into(), resource: "configmaps".into(), name: Some("c1".into()), code: 403 });
    let err = cms.delete("c1", &DeleteParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403));
    assert!(cms.delete("c2", &DeleteParams::default()).await.is_ok());
    let calls = server.calls();
    assert!(calls.contains(&Call {
        verb: "list".into(),
        group: "".into(),
        resource: "configmaps".into(),
        namespace: Some("apps".into())
    }));
    assert_eq!(server.count("create", "configmaps"), 7);
}

#[tokio::test]
async fn a_watch_from_a_version_older_than_the_history_is_gone() {
    let server = FakeApiServer::with_history(4);
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "apps");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let old = list.metadata.resource_version.unwrap();
    for i in 0..10 {
        server.put("configmaps", config_map(&format!("c{i}"), "x"));
    }
    let mut stream = cms.watch(&kube::api::WatchParams::default(), &old).await.unwrap().boxed();
    match stream.next().await.unwrap().unwrap() {
        kube::api::WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

/// kube-runtime's watcher itself meets the 410: its watch (no bookmarks) resumes from a version
/// the history no longer holds, and it re-lists — learning of the deletion and the creation it
/// missed meanwhile. (The watcher's stream is lazy: its watch request goes out only when polled
/// after `InitDone`, so every write below precedes it.)
#[tokio::test]
async fn a_watcher_that_falls_behind_the_history_is_told_410_and_relists() {
    let server = FakeApiServer::with_history(4);
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "apps");
    server.put("configmaps", config_map("a", "1"));
    let config = watcher::Config::default().labels("team=a").disable_bookmarks();
    let mut events = watcher::watcher(cms, config).boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("an event within 10 s").unwrap()
    };
    let mut first = Vec::new();
    loop {
        match next().await.unwrap() {
            Event::InitApply(cm) => first.push(cm.metadata.name.unwrap()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(first, ["a"]);
    // Writes the watch does not select move the resource version past the history it resumes
    // from; without bookmarks the watcher never learns the newer version.
    for i in 0..10 {
        let mut other = config_map(&format!("other{i}"), "x");
        other["metadata"]["labels"]["team"] = "b".into();
        server.put("configmaps", other);
    }
    // Removed while the watcher is behind: only a re-list can tell it.
    server.delete("configmaps", "apps", "a");
    server.put("configmaps", config_map("b", "1"));
    let mut gone = false;
    let mut relisted = Vec::new();
    loop {
        match next().await {
            Err(watcher::Error::WatchError(e)) => {
                assert_eq!(e.code, 410, "{e:?}");
                gone = true;
            }
            Err(other) => panic!("unexpected watcher error {other:?}"),
            Ok(Event::Init) => relisted.clear(),
            Ok(Event::InitApply(cm)) => relisted.push(cm.metadata.name.unwrap()),
            Ok(Event::InitDone) => break,
            Ok(Event::Apply(_) | Event::Delete(_)) => {
                panic!("a change delivered live: the history should have been exceeded")
            }
        }
    }
    assert!(gone, "the watcher re-listed without a 410");
    assert_eq!(relisted, ["b"], "the re-list replaces what the watcher knew");
    assert_eq!(server.count("list", "configmaps"), 2, "one initial list and one re-list");
}

/// Writers racing each other still reach a watch in resourceVersion order, so the watch (which
/// skips any change at or below the last version it sent) loses none of them. Fails when the
/// store's lock is released before the change is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_no_change_to_a_watch() {
    const WRITERS: usize = 8;
    const EACH: usize = 250;
    let server = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "apps");
    let from = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = cms.watch(&kube::api::WatchParams::default(), &from).await.unwrap().boxed();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let server = server.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    server.put("configmaps", config_map(&format!("w{w}-{i}"), "x"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let all = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.len() < WRITERS * EACH {
            match stream.next().await.unwrap().unwrap() {
                kube::api::WatchEvent::Added(cm) => {
                    seen.insert(cm.metadata.name.unwrap());
                }
                kube::api::WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(all.is_ok(), "the watch delivered {} of {} creations", seen.len(), WRITERS * EACH);
}

//! A stateful, in-process stand-in for the Kubernetes API server, behind a real `kube::Client`.
//!
//! It answers what a controller built on kube-rs asks of an API server, the way one answers:
//!
//! - list (with pages) and watch, with resource versions, bookmarks and `410 Gone` when a watch
//!   asks for a version older than the retained history, so a watcher re-lists;
//! - get, create, replace, delete, and patches: server-side apply (with merge semantics), JSON
//!   merge patch, JSON patch; the `status` subresource;
//! - a write that changes nothing keeps the resource version and emits no event; `generation`
//!   grows only when something outside `metadata` and `status` changes;
//! - deletion waits for finalizers; deleting an object deletes the objects it owns (background
//!   garbage collection);
//! - discovery of the resources it serves (Strimzi's only when [`FakeApiServer::serve_strimzi`]);
//! - optionally, what other controllers would do: Deployments report their replicas ready,
//!   Strimzi KafkaTopics and KafkaUsers report `Ready` (and KafkaUsers get their Secret).
//!
//! Every request is recorded as the RBAC rule it needs (verb, API group, resource, namespace),
//! including what the OwnerReferencesPermissionEnforcement admission plugin asks for; faults can
//! be injected per verb, resource and name.

mod http;
mod selector;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use store::Change;

/// A resource the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `status` subresource: the main endpoint ignores `status`, `/status` changes only it.
    pub status_subresource: bool,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }
}

const fn resource(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status_subresource: bool,
) -> ResourceInfo {
    ResourceInfo { group, version, plural, kind, namespaced, status_subresource }
}

/// The built-in resources and Herald's own.
const BUILT_IN: &[ResourceInfo] = &[
    resource("", "v1", "namespaces", "Namespace", false, true),
    resource("", "v1", "services", "Service", true, true),
    resource("", "v1", "secrets", "Secret", true, false),
    resource("", "v1", "configmaps", "ConfigMap", true, false),
    resource("", "v1", "pods", "Pod", true, true),
    resource("apps", "v1", "deployments", "Deployment", true, true),
    resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, true),
    resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, false),
    resource("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    resource("events.k8s.io", "v1", "events", "Event", true, false),
    resource("herald.dev", "v1alpha1", "notificationpipelines", "NotificationPipeline", true, true),
];

/// Strimzi's resources, served after [`FakeApiServer::serve_strimzi`].
const STRIMZI: &[ResourceInfo] = &[
    resource("kafka.strimzi.io", "v1beta2", "kafkatopics", "KafkaTopic", true, true),
    resource("kafka.strimzi.io", "v1beta2", "kafkausers", "KafkaUser", true, true),
];

/// A request as the RBAC rule it needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Call {
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// `None` for cluster-wide requests (a list or watch across namespaces).
    pub namespace: Option<String>,
}

/// An injected failure: requests matching `verb`, `resource` (plural) and, when set, `name`
/// answer `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub verb: String,
    pub resource: String,
    pub name: Option<String>,
    pub code: u16,
}

/// What the simulated other controllers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulation {
    /// Deployments report `spec.replicas` ready after each spec change (the Deployment
    /// controller and kubelets).
    pub deployments_become_ready: bool,
    /// Strimzi marks KafkaTopics and KafkaUsers Ready at their generation and writes each
    /// KafkaUser's Secret (`password`).
    pub strimzi_reconciles: bool,
}

impl Default for Simulation {
    fn default() -> Self {
        Self { deployments_become_ready: true, strimzi_reconciles: true }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Mutex<store::Store>,
    pub(crate) changes: tokio::sync::broadcast::Sender<Arc<Change>>,
    pub(crate) resources: Mutex<Vec<ResourceInfo>>,
    pub(crate) simulation: Mutex<Simulation>,
    pub(crate) faults: Mutex<Vec<Fault>>,
    pub(crate) calls: Mutex<BTreeSet<Call>>,
    pub(crate) counts: Mutex<BTreeMap<(String, String), u64>>,
    pub(crate) log: Mutex<Option<Vec<Logged>>>,
    pub(crate) bookmark_every: Duration,
}

/// A request as it arrived (when [`FakeApiServer::log_requests`] is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// The stand-in API server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct FakeApiServer {
    pub(crate) inner: Arc<Inner>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApiServer {
    /// A server with the built-in resources and Herald's `NotificationPipeline`, no objects.
    pub fn new() -> Self {
        Self::with_history(4096)
    }

    /// As [`FakeApiServer::new`], keeping the last `history` changes for watches that resume
    /// from an older resource version (older ones get `410 Gone` and re-list).
    pub fn with_history(history: usize) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(8192);
        Self {
            inner: Arc::new(Inner {
                store: Mutex::new(store::Store::new(history)),
                changes,
                resources: Mutex::new(BUILT_IN.to_vec()),
                simulation: Mutex::new(Simulation::default()),
                faults: Mutex::new(Vec::new()),
                calls: Mutex::new(BTreeSet::new()),
                counts: Mutex::new(BTreeMap::new()),
                log: Mutex::new(None),
                bookmark_every: Duration::from_secs(1),
            }),
        }
    }

    /// A `kube::Client` talking to this server; `default_namespace` for `Api::default_namespaced`.
    pub fn client(&self) -> kube::Client {
        let server = self.clone();
        let service = tower::service_fn(move |request| {
            let server = server.clone();
            async move { Ok::<_, std::convert::Infallible>(server.handle(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Serves Strimzi's KafkaTopic and KafkaUser (`kafka.strimzi.io/v1beta2`) from now on.
    pub fn serve_strimzi(&self) {
        let mut resources = lock(&self.inner.resources);
        for r in STRIMZI {
            if !resources.contains(r) {
                resources.push(r.clone());
            }
        }
    }

    /// Sets what the simulated other controllers do.
    pub fn simulate(&self, simulation: Simulation) {
        *lock(&self.inner.simulation) = simulation;
    }

    /// Makes matching requests fail with `fault.code` until [`FakeApiServer::clear_faults`].
    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Every distinct RBAC rule a request needed so far.
    pub fn calls(&self) -> BTreeSet<Call> {
        lock(&self.inner.calls).clone()
    }

    /// How many requests of `verb` on `resource` (`resource/subresource`) were made.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        lock(&self.inner.counts).get(&(verb.to_string(), resource.to_string())).copied().unwrap_or(0)
    }

    /// Every request count, by (verb, resource).
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.inner.counts).clone()
    }

    /// Keeps every request from now on (method, path, query), for tests that check the order
    /// and parameters of requests.
    pub fn log_requests(&self) {
        lock(&self.inner.log).get_or_insert_with(Vec::new);
    }

    /// The requests kept since [`FakeApiServer::log_requests`].
    pub fn logged(&self) -> Vec<Logged> {
        lock(&self.inner.log).clone().unwrap_or_default()
    }

    /// Forgets the recorded calls and counts.
    pub fn reset_calls(&self) {
        lock(&self.inner.calls).clear();
        lock(&self.inner.counts).clear();
    }

    fn info(&self, plural: &str) -> ResourceInfo {
        lock(&self.inner.resources)
            .iter()
            .find(|r| r.plural == plural)
            .cloned()
            .unwrap_or_else(|| panic!("the fake API server does not serve {plural}"))
    }

    /// Creates or replaces `object` as another actor would (a user, another controller): no
    /// request is recorded. Returns the stored object.
    pub fn put(&self, plural: &str, object: Value) -> Value {
        let info = self.info(plural);
        let written = self.write_direct(&info, object);
        self.after_write(&info, &written);
        written
    }

    /// The stored object, if any.
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.inner.store).get(plural, namespace, name)
    }

    /// Every stored object of `plural` (in `namespace`, or all when `None`).
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        lock(&self.inner.store).list(plural, namespace)
    }

    /// Deletes an object as another actor would (finalizers honoured, dependents collected).
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) {
        let info = self.info(plural);
        let mut store = lock(&self.inner.store);
        let changes = store.delete(&info, namespace, name);
        self.publish(&store, changes);
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        lock(&self.inner.store).resource_version()
    }

    /// Sends `changes` to the watches. Called with the store still locked (`_store`), so that
    /// concurrent writers publish in resourceVersion order: a watch skips a change at or below the
    /// last version it sent, and a change published after a later one would be lost to it.
    pub(crate) fn publish(&self, _store: &std::sync::MutexGuard<'_, store::Store>, changes: Vec<Arc<Change>>) {
        for change in changes {
            let _ = self.inner.changes.send(change);
        }
    }

    fn write_direct(&self, info: &ResourceInfo, object: Value) -> Value {
        let mut store = lock(&self.inner.store);
        let (written, changes) = store.upsert(info, object, store::Part::Whole);
        self.publish(&store, changes);
        written
    }

    /// What the simulated controllers do after `object` (of `info`) was written.
    pub(crate) fn after_write(&self, info: &ResourceInfo, object: &Value) {
        let simulation = *lock(&self.inner.simulation);
        let observed = object["metadata"]["generation"].as_i64().unwrap_or(1);
        match info.plural {
            "deployments" if simulation.deployments_become_ready => {
                let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
                let status = serde_json::json!({
                    "observedGeneration": observed,
                    "replicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "updatedReplicas": replicas,
                });
                if object["status"] != status {
                    self.set_status(info, object, status);
                }
            }
            "kafkatopics" | "kafkausers" if simulation.strimzi_reconciles => {
                let status = serde_json::json!({
                    "observedGeneration": observed,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": ""}],
                });
                if object["status"]["observedGeneration"] != status["observedGeneration"] {
                    self.set_status(info, object, status);
                }
                if info.plural == "kafkausers" {
                    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
                    let name = object["metadata"]["name"].as_str().unwrap_or_default();
                    if self.get("secrets", namespace, name).is_none() {
                        // "s3cret" (base64), as Strimzi's User Operator writes a SCRAM password.
                        self.write_direct(
                            &self.info("secrets"),
                            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": name, "namespace": namespace},
                                "data": {"password": "czNjcmV0"}}),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn set_status(&self, info: &ResourceInfo, object: &Value, status: Value) {
        let mut with_status = object.clone();
        with_status["status"] = status;
        let mut store = lock(&self.inner.store);
        let (_, changes) = store.upsert(info, with_status, store::Part::Status);
        self.publish(&store, changes);
    }
}

/// Serves this API server over plain HTTP on `listener` until `shutdown` resolves.
#[cfg(feature = "serve")]
pub async fn serve(
    server: FakeApiServer,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use http_body_util::BodyExt;
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let server = server.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let request = ::http::Request::from_parts(parts, kube::client::Body::from(bytes));
            let response = server.handle(request).await;
            response.map(axum::body::Body::new)
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

//! The HTTP side: routes, verbs, patches, lists and watch streams.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind, Part, Refusal};
use crate::{Call, FakeApiServer, ResourceInfo, lock};

pub type Body = BoxBody<Bytes, std::io::Error>;

fn body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn json(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(body(serde_json::to_vec(value).unwrap_or_default()));
    *response.status_mut() = code;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn status_value(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

fn refuse(r: &Refusal) -> Response<Body> {
    json(StatusCode::from_u16(r.code).unwrap_or(StatusCode::BAD_REQUEST), &status_value(r.code, r.reason, &r.message))
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// What a resource path names.
struct Target {
    info: ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl FakeApiServer {
    fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        lock(&self.inner.resources)
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    fn target(&self, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (plural, name, subresource) = match rest {
            [plural] => (*plural, None, None),
            [plural, name] => (*plural, Some(name.to_string()), None),
            [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
            _ => return None,
        };
        let info = self.resource(group, version, plural)?;
        Some(Target { info, namespace, name, subresource })
    }

    fn discovery(&self, parts: &[&str]) -> Option<Value> {
        let resources = lock(&self.inner.resources).clone();
        let list = |group: &str, version: &str| {
            let items: Vec<Value> = resources
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .flat_map(|r| {
                    let main = serde_json::json!({
                        "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                    });
                    let status = r.status_subresource.then(|| {
                        serde_json::json!({"name": format!("{}/status", r.plural), "singularName": "",
                            "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})
                    });
                    std::iter::once(main).chain(status)
                })
                .collect();
            serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
                "resources": items})
        };
        let group_value = |group: &str| {
            let versions: Vec<&str> = {
                let mut v: Vec<&str> = resources.iter().filter(|r| r.group == group).map(|r| r.version).collect();
                v.dedup();
                v
            };
            let gv = |v: &str| serde_json::json!({"groupVersion": format!("{group}/{v}"), "version": v});
            serde_json::json!({"name": group, "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
                "preferredVersion": gv(versions.first().copied().unwrap_or("v1"))})
        };
        match parts {
            ["api"] => {
                Some(serde_json::json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
            }
            ["api", "v1"] => Some(list("", "v1")),
            ["apis"] => {
                let mut groups: Vec<&str> = resources.iter().map(|r| r.group).filter(|g| !g.is_empty()).collect();
                groups.sort_unstable();
                groups.dedup();
                Some(serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": groups.iter().map(|g| group_value(g)).collect::<Vec<_>>()}))
            }
            ["apis", group] if resources.iter().any(|r| r.group == *group) => {
                let mut g = group_value(group);
                g["kind"] = "APIGroup".into();
                g["apiVersion"] = "v1".into();
                Some(g)
            }
            ["apis", group, version] if resources.iter().any(|r| r.group == *group && r.version == *version) => {
                Some(list(group, version))
            }
            _ => None,
        }
    }

    fn record(&self, call: Call) {
        let resource = call.resource.clone();
        let verb = call.verb.clone();
        lock(&self.inner.calls).insert(call);
        *lock(&self.inner.counts).entry((verb, resource)).or_default() += 1;
    }

    fn fault(&self, verb: &str, plural: &str, name: Option<&str>) -> Option<u16> {
        lock(&self.inner.faults)
            .iter()
            .find(|f| f.verb == verb && f.resource == plural && (f.name.is_none() || f.name.as_deref() == name))
            .map(|f| f.code)
    }

    /// What the OwnerReferencesPermissionEnforcement admission plugin asks of a write: `delete`
    /// on the object when its owner references change (not on create), and `update` on the
    /// owner's `finalizers` for each new owner reference that blocks the owner's deletion.
    fn admit_owner_references(&self, target: &Target, old: Option<&Value>, new: &Value) {
        let refs = |v: Option<&Value>| -> Vec<Value> {
            v.and_then(|v| v["metadata"]["ownerReferences"].as_array().cloned()).unwrap_or_default()
        };
        let (before, after) = (refs(old), refs(Some(new)));
        if before == after {
            return;
        }
        if old.is_some() {
            self.record(Call {
                verb: "delete".into(),
                group: target.info.group.into(),
                resource: target.info.plural.into(),
                namespace: target.namespace.clone(),
            });
        }
        for r in after.iter().filter(|r| r["blockOwnerDeletion"] == true && !before.contains(r)) {
            let kind = r["kind"].as_str().unwrap_or_default();
            let group = r["apiVersion"].as_str().unwrap_or_default().rsplit_once('/').map_or("", |(g, _)| g);
            let plural = lock(&self.inner.resources).iter().find(|i| i.kind == kind).map(|i| i.plural);
            if let Some(plural) = plural {
                self.record(Call {
                    verb: "update".into(),
                    group: group.into(),
                    resource: format!("{plural}/finalizers"),
                    namespace: target.namespace.clone(),
                });
            }
        }
    }

    pub(crate) async fn handle(&self, request: Request<kube::client::Body>) -> Response<Body> {
        let (parts, request_body) = request.into_parts();
        let bytes = request_body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let path = parts.uri.path().to_string();
        if let Some(log) = lock(&self.inner.log).as_mut() {
            log.push(crate::Logged {
                method: parts.method.to_string(),
                path: path.clone(),
                query: parts.uri.query().unwrap_or_default().to_string(),
            });
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        if parts.method == Method::GET
            && let Some(value) = self.discovery(&segments)
        {
            return json(StatusCode::OK, &value);
        }
        let target = match segments.as_slice() {
            ["api", version, rest @ ..] => self.target("", version, rest),
            ["apis", group, version, rest @ ..] => self.target(group, version, rest),
            _ => None,
        };
        let Some(target) = target else {
            return json(
                StatusCode::NOT_FOUND,
                &status_value(404, "NotFound", &format!("the server could not find {path}")),
            );
        };
        let query = query(&parts.uri);
        let watching = query.get("watch").is_some_and(|v| v == "true" || v == "1");
        let verb = match (&parts.method, target.name.is_some()) {
            (&Method::GET, true) => "get",
            (&Method::GET, false) if watching => "watch",
            (&Method::GET, false) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => "unknown",
        };
        let resource = match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.info.plural),
            None => target.info.plural.to_string(),
        };
        self.record(Call {
            verb: verb.into(),
            group: target.info.group.into(),
            resource,
            namespace: target.namespace.clone(),
        });
        if let Some(code) = self.fault(verb, target.info.plural, target.name.as_deref()) {
            return json(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &status_value(code, "Injected", &format!("injected fault: {verb} {}", target.info.plural)),
            );
        }
        let content_type =
            parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        match verb {
            "get" => self.get_one(&target),
            "list" => self.list_page(&target, &query),
            "watch" => self.watch(&target, &query),
            "create" => self.create(&target, &bytes),
            "update" => self.update(&target, &bytes),
            "patch" => self.patch(&target, &bytes, &content_type),
            "delete" => self.delete_one(&target),
            _ => json(StatusCode::METHOD_NOT_ALLOWED, &status_value(405, "MethodNotAllowed", verb)),
        }
    }

    fn namespace_of(target: &Target) -> String {
        target.namespace.clone().unwrap_or_default()
    }

    fn get_one(&self, target: &Target) -> Response<Body> {
        let name = target.name.as_deref().unwrap_or_default();
        match lock(&self.inner.store).get(target.info.plural, &Self::namespace_of(target), name) {
            Some(v) => json(StatusCode::OK, &v),
            None => refuse(&Refusal::not_found(target.info.plural, name)),
        }
    }

    fn list_page(&self, target: &Target, query: &BTreeMap<String, String>) -> Response<Body> {
        let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str));
        let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str));
        let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
        let token = query.get("continue").filter(|c| !c.is_empty());
        let (list_rv, after) = match token.and_then(|t| {
            let mut parts = t.splitn(3, '/');
            Some((parts.next()?.parse::<u64>().ok()?, (parts.next()?.to_string(), parts.next()?.to_string())))
        }) {
            Some((rv, after)) => (Some(rv), Some(after)),
            None => (None, None),
        };
        let store = lock(&self.inner.store);
        let rv = list_rv.unwrap_or_else(|| store.resource_version());
        let keep = |l: &BTreeMap<String, String>, o: &Value| labels.matches(l) && fields.matches(o);
        let (items, next, remaining) =
            store.page(target.info.plural, target.namespace.as_deref(), after.as_ref(), limit, &keep);
        drop(store);
        let mut out = Vec::with_capacity(items.iter().map(Bytes::len).sum::<usize>() + 256);
        out.extend_from_slice(
            format!(
                r#"{{"apiVersion":"{}","kind":"{}List","metadata":{{"resourceVersion":"{rv}""#,
                target.info.api_version(),
                target.info.kind
            )
            .as_bytes(),
        );
        if let Some((ns, name)) = next {
            out.extend_from_slice(
                format!(r#","continue":"{rv}/{ns}/{name}","remainingItemCount":{remaining}"#).as_bytes(),
            );
        }
        out.extend_from_slice(br#"},"items":["#);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        out.extend_from_slice(b"]}");
        let mut response = Response::new(body(out));
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }

    fn watch(&self, target: &Target, query: &BTreeMap<String, String>) -> Response<Body> {
        let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str));
        let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str));
        let (initial_labels, initial_fields) = (labels.clone(), fields.clone());
        let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
        let from = query.get("resourceVersion").and_then(|rv| rv.parse::<u64>().ok()).filter(|rv| *rv > 0);
        let info = target.info.clone();
        let namespace = target.namespace.clone();
        let matches = move |change: &Change| {
            change.plural == info.plural
                && namespace.as_ref().is_none_or(|n| *n == change.namespace)
                && labels.matches(&change.labels)
                && (fields.is_empty()
                    || serde_json::from_slice::<Value>(&change.object).is_ok_and(|o| fields.matches(&o)))
        };
        let line = |kind: &str, object: &[u8]| {
            let mut l = Vec::with_capacity(object.len() + 32);
            l.extend_from_slice(format!(r#"{{"type":"{kind}","object":"#).as_bytes());
            l.extend_from_slice(object);
            l.extend_from_slice(b"}\n");
            Bytes::from(l)
        };
        let (receiver, backlog, start_rv) = {
            let store = lock(&self.inner.store);
            let receiver = self.inner.changes.subscribe();
            let current = store.resource_version();
            let backlog: Result<Vec<Bytes>, ()> = match from {
                Some(rv) => store.since(rv).map(|changes| {
                    changes.iter().filter(|c| matches(c)).map(|c| line(c.kind.as_str(), &c.object)).collect()
                }),
                None => {
                    let keep = |l: &BTreeMap<String, String>, o: &Value| {
                        initial_labels.matches(l) && initial_fields.matches(o)
                    };
                    let (items, _, _) = store.page(target.info.plural, target.namespace.as_deref(), None, None, &keep);
                    Ok(items.iter().map(|o| line(ChangeKind::Added.as_str(), o)).collect())
                }
            };
            let backlog = match backlog {
                Ok(b) => b,
                Err(()) => {
                    let gone = status_value(410, "Expired", "too old resource version");
                    vec![line("ERROR", &serde_json::to_vec(&gone).unwrap_or_default())]
                }
            };
            (receiver, backlog, current)
        };
        let kind = target.info.kind;
        let api_version = target.info.api_version();
        let state = WatchState {
            backlog: VecDeque::from(backlog),
            receiver,
            last_rv: start_rv,
            deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
            bookmark_every: bookmarks.then_some(self.inner.bookmark_every),
            next_bookmark: tokio::time::Instant::now() + self.inner.bookmark_every,
            ended: false,
        };
        let matches = Arc::new(matches);
        let stream = futures::stream::unfold(state, move |mut s| {
            let matches = matches.clone();
            let api_version = api_version.clone();
            async move {
                loop {
                    if let Some(next) = s.backlog.pop_front() {
                        let gone = next.starts_with(br#"{"type":"ERROR""#);
                        if gone {
                            s.ended = true;
                        }
                        return Some((next, s));
                    }
                    if s.ended {
                        return None;
                    }
                    let bookmark = async {
                        match s.bookmark_every {
                            Some(_) => tokio::time::sleep_until(s.next_bookmark).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        received = s.receiver.recv() => match received {
                            Ok(change) => {
                                if change.rv <= s.last_rv {
                                    continue;
                                }
                                s.last_rv = change.rv;
                                if matches(&change) {
                                    s.backlog.push_back(line(change.kind.as_str(), &change.object));
                                }
                            }
                            Err(RecvError::Lagged(_)) => {
                                let gone = status_value(410, "Expired", "the watch fell behind");
                                s.backlog.push_back(line("ERROR", &serde_json::to_vec(&gone).unwrap_or_default()));
                            }
                            Err(RecvError::Closed) => return None,
                        },
                        _ = bookmark => {
                            s.next_bookmark = tokio::time::Instant::now() + s.bookmark_every.unwrap_or_default();
                            let object = serde_json::json!({"kind": kind, "apiVersion": api_version,
                                "metadata": {"resourceVersion": s.last_rv.to_string()}});
                            s.backlog.push_back(line("BOOKMARK", &serde_json::to_vec(&object).unwrap_or_default()));
                        }
                        _ = tokio::time::sleep_until(s.deadline) => return None,
                    }
                }
            }
        });
        let body = BodyExt::boxed(StreamBody::new(stream.map(|b| Ok::<_, std::io::Error>(Frame::data(b)))));
        let mut response = Response::new(body);
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }

    fn parse_body(bytes: &[u8]) -> Result<Value, Refusal> {
        serde_json::from_slice(bytes).map_err(|e| Refusal {
            code: 400,
            reason: "BadRequest",
            message: format!("invalid JSON body: {e}"),
        })
    }

    fn create(&self, target: &Target, bytes: &[u8]) -> Response<Body> {
        let mut object = match Self::parse_body(bytes) {
            Ok(o) => o,
            Err(r) => return refuse(&r),
        };
        if let Some(ns) = &target.namespace {
            object["metadata"]["namespace"] = ns.clone().into();
        }
        if target.info.status_subresource
            && let Some(m) = object.as_object_mut()
        {
            m.remove("status");
        }
        self.admit_owner_references(target, None, &object);
        let mut store = lock(&self.inner.store);
        let result = store.create(&target.info, object);
        match result {
            Ok((written, changes)) => {
                self.publish(&store, changes);
                drop(store);
                self.after_write(&target.info, &written);
                json(StatusCode::CREATED, &written)
            }
            Err(r) => refuse(&r),
        }
    }

    fn part(target: &Target) -> Part {
        if target.subresource.as_deref() == Some("status") { Part::Status } else { Part::Main }
    }

    fn write(
        &self,
        target: &Target,
        old: Option<&Value>,
        mut candidate: Value,
        precondition: Option<String>,
    ) -> Response<Body> {
        let name = target.name.clone().unwrap_or_default();
        candidate["metadata"]["name"] = name.into();
        if let Some(ns) = &target.namespace {
            candidate["metadata"]["namespace"] = ns.clone().into();
        }
        if Self::part(target) == Part::Main {
            self.admit_owner_references(target, old, &candidate);
        }
        let mut store = lock(&self.inner.store);
        let result = store.update(&target.info, candidate, Self::part(target), precondition.as_deref());
        match result {
            Ok((written, changes)) => {
                let changed = !changes.is_empty();
                self.publish(&store, changes);
                drop(store);
                if changed {
                    self.after_write(&target.info, &written);
                }
                json(StatusCode::OK, &written)
            }
            Err(r) => refuse(&r),
        }
    }

    fn update(&self, target: &Target, bytes: &[u8]) -> Response<Body> {
        let candidate = match Self::parse_body(bytes) {
            Ok(o) => o,
            Err(r) => return refuse(&r),
        };
        let name = target.name.clone().unwrap_or_default();
        let old = lock(&self.inner.store).get(target.info.plural, &Self::namespace_of(target), &name);
        let precondition = candidate["metadata"]["resourceVersion"].as_str().map(str::to_string);
        match old {
            Some(old) => self.write(target, Some(&old), candidate, precondition),
            None => refuse(&Refusal::not_found(target.info.plural, &name)),
        }
    }

    fn patch(&self, target: &Target, bytes: &[u8], content_type: &str) -> Response<Body> {
        let name = target.name.clone().unwrap_or_default();
        let old = lock(&self.inner.store).get(target.info.plural, &Self::namespace_of(target), &name);
        let patch = match Self::parse_body(bytes) {
            Ok(p) => p,
            Err(r) => return refuse(&r),
        };
        let apply = content_type.starts_with("application/apply-patch");
        let Some(old) = old else {
            if apply && Self::part(target) == Part::Main {
                // An apply that creates the object is authorized as a create as well.
                self.record(Call {
                    verb: "create".into(),
                    group: target.info.group.into(),
                    resource: target.info.plural.into(),
                    namespace: target.namespace.clone(),
                });
                return self.create(target, bytes);
            }
            return refuse(&Refusal::not_found(target.info.plural, &name));
        };
        let mut candidate = old.clone();
        if content_type.starts_with("application/json-patch") {
            let ops: json_patch::Patch = match serde_json::from_value(patch) {
                Ok(ops) => ops,
                Err(e) => return refuse(&Refusal { code: 400, reason: "BadRequest", message: e.to_string() }),
            };
            if let Err(e) = json_patch::patch(&mut candidate, &ops) {
                return refuse(&Refusal { code: 422, reason: "Invalid", message: e.to_string() });
            }
        } else {
            // Server-side apply, merge and strategic merge patches, all with merge semantics.
            json_patch::merge(&mut candidate, &patch);
        }
        // A merge may not move the object's identity.
        candidate["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        self.write(target, Some(&old), candidate, None)
    }

    fn delete_one(&self, target: &Target) -> Response<Body> {
        let name = target.name.clone().unwrap_or_default();
        let namespace = Self::namespace_of(target);
        let old = lock(&self.inner.store).get(target.info.plural, &namespace, &name);
        let Some(old) = old else { return refuse(&Refusal::not_found(target.info.plural, &name)) };
        let mut store = lock(&self.inner.store);
        let changes = store.delete(&target.info, &namespace, &name);
        self.publish(&store, changes);
        drop(store);
        let now = lock(&self.inner.store).get(target.info.plural, &namespace, &name);
        json(StatusCode::OK, &now.unwrap_or(old))
    }
}

struct WatchState {
    backlog: VecDeque<Bytes>,
    receiver: tokio::sync::broadcast::Receiver<Arc<Change>>,
    last_rv: u64,
    deadline: tokio::time::Instant,
    bookmark_every: Option<Duration>,
    next_bookmark: tokio::time::Instant,
    ended: bool,
}

//! The objects, their versions and the change history: what etcd and the registry do for the real
//! API server. Objects are kept as compact JSON bytes (parsed on use), so thousands of them stay
//! small.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::ResourceInfo;

/// What a watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One change of one object, at a resource version.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub plural: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub kind: ChangeKind,
    pub object: Bytes,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main endpoint: everything but `status` (when the resource has a status subresource).
    Main,
    /// The `status` subresource: only `status`.
    Status,
    /// A direct write by the test: everything as given.
    Whole,
}

/// An API error: code, reason and message, answered as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn not_found(plural: &str, name: &str) -> Self {
        Self { code: 404, reason: "NotFound", message: format!("{plural} \"{name}\" not found") }
    }

    pub fn conflict(message: String) -> Self {
        Self { code: 409, reason: "Conflict", message }
    }
}

type Key = (String, String, String);

struct Entry {
    json: Bytes,
    uid: String,
    owners: Vec<String>,
    labels: BTreeMap<String, String>,
}

pub struct Store {
    rv: u64,
    next_uid: u64,
    objects: BTreeMap<Key, Entry>,
    history: VecDeque<Arc<Change>>,
    history_cap: usize,
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn owners_of(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Now as RFC 3339, UTC, whole seconds (the API server's `metav1.Time`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Whether `a` and `b` differ outside `metadata` and `status` (what bumps `generation`).
fn spec_differs(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            for key in ["metadata", "status", "apiVersion", "kind"] {
                map.remove(key);
            }
        }
        v
    };
    strip(a) != strip(b)
}

impl Store {
    pub fn new(history_cap: usize) -> Self {
        Self { rv: 1, next_uid: 1, objects: BTreeMap::new(), history: VecDeque::new(), history_cap: history_cap.max(1) }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn key(plural: &str, namespace: &str, name: &str) -> Key {
        (plural.to_string(), namespace.to_string(), name.to_string())
    }

    fn parse(entry: &Entry) -> Value {
        serde_json::from_slice(&entry.json).unwrap_or(Value::Null)
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects.get(&Self::key(plural, namespace, name)).map(Self::parse)
    }

    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((p, ns, _), _)| p == plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, e)| Self::parse(e))
            .collect()
    }

    /// One page of a list: the objects after `after` (exclusive), at most `limit`, filtered by
    /// `keep` (labels, then the parsed object). Returns the objects, the key to continue after
    /// and how many matching objects remain.
    pub fn page(
        &self,
        plural: &str,
        namespace: Option<&str>,
        after: Option<&(String, String)>,
        limit: Option<usize>,
        keep: &dyn Fn(&BTreeMap<String, String>, &Value) -> bool,
    ) -> (Vec<Bytes>, Option<(String, String)>, usize) {
        let mut items = Vec::new();
        let mut last = None;
        let mut remaining = 0;
        for ((p, ns, name), entry) in &self.objects {
            if p != plural || namespace.is_some_and(|n| n != ns) {
                continue;
            }
            if after.is_some_and(|(a_ns, a_name)| (ns, name) <= (a_ns, a_name)) {
                continue;
            }
            if !keep(&entry.labels, &Self::parse(entry)) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(entry.json.clone());
            last = Some((ns.clone(), name.clone()));
        }
        (items, if remaining > 0 { last } else { None }, remaining)
    }

    /// The changes after `rv`, or `Err` when older ones were dropped from the history.
    pub fn since(&self, rv: u64) -> Result<Vec<Arc<Change>>, ()> {
        if let Some(oldest) = self.history.front()
            && rv + 1 < oldest.rv
        {
            return Err(());
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    fn record(&mut self, plural: &str, namespace: &str, kind: ChangeKind, object: &Value) -> Arc<Change> {
        let change = Arc::new(Change {
            rv: self.rv,
            plural: plural.to_string(),
            namespace: namespace.to_string(),
            labels: labels_of(object),
            kind,
            object: Bytes::from(serde_json::to_vec(object).unwrap_or_default()),
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_cap {
            self.history.pop_front();
        }
        change
    }

    fn insert(&mut self, key: Key, object: &Value) {
        let entry = Entry {
            json: Bytes::from(serde_json::to_vec(object).unwrap_or_default()),
            uid: object["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
            owners: owners_of(object),
            labels: labels_of(object),
        };
        self.objects.insert(key, entry);
    }

    /// Creates `object`; 409 when it exists.
    pub fn create(&mut self, info: &ResourceInfo, mut object: Value) -> Result<(Value, Vec<Arc<Change>>), Refusal> {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(Refusal { code: 422, reason: "Invalid", message: "metadata.name: Required value".into() });
        }
        let key = Self::key(info.plural, &namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(Refusal {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} \"{name}\" already exists", info.plural),
            });
        }
        self.rv += 1;
        object["apiVersion"] = info.api_version().into();
        object["kind"] = info.kind.into();
        let meta = &mut object["metadata"];
        meta["uid"] = format!("uid-{:08}", self.next_uid).into();
        self.next_uid += 1;
        meta["resourceVersion"] = self.rv.to_string().into();
        meta["generation"] = 1.into();
        meta["creationTimestamp"] = now_rfc3339().into();
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        let change = self.record(info.plural, &namespace, ChangeKind::Added, &object);
        self.insert(key, &object);
        Ok((object, vec![change]))
    }

    /// Writes `candidate` over the stored object (which must exist) as `part` allows.
    /// `precondition`: the resource version the writer read (409 when stale).
    pub fn update(
        &mut self,
        info: &ResourceInfo,
        candidate: Value,
        part: Part,
        precondition: Option<&str>,
    ) -> Result<(Value, Vec<Arc<Change>>), Refusal> {
        let namespace = candidate["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = candidate["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = Self::key(info.plural, &namespace, &name);
        let old = self.objects.get(&key).map(Self::parse).ok_or_else(|| Refusal::not_found(info.plural, &name))?;
        let old_rv = old["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
        if let Some(expected) = precondition.filter(|p| !p.is_empty())
            && expected != old_rv
        {
            return Err(Refusal::conflict(format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                info.plural
            )));
        }
        let mut new = match part {
            Part::Status => {
                let mut new = old.clone();
                new["status"] = candidate["status"].clone();
                new
            }
            Part::Main => {
                let mut new = candidate;
                if info.status_subresource {
                    match old.get("status") {
                        Some(status) => new["status"] = status.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                new
            }
            Part::Whole => candidate,
        };
        new["apiVersion"] = info.api_version().into();
        new["kind"] = info.kind.into();
        // What the writer cannot change.
        for field in ["uid", "creationTimestamp", "deletionTimestamp", "generation"] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if spec_differs(&old, &new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = generation.into();
        }
        new["metadata"]["resourceVersion"] = old_rv.clone().into();
        if new == old {
            return Ok((old, Vec::new()));
        }
        let finalizers_empty = new["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if new["metadata"].get("deletionTimestamp").is_some() && finalizers_empty {
            self.rv += 1;
            new["metadata"]["resourceVersion"] = self.rv.to_string().into();
            let change = self.record(info.plural, &namespace, ChangeKind::Deleted, &new);
            self.objects.remove(&key);
            let mut changes = vec![change];
            let uid = new["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            changes.extend(self.collect_dependents(&uid));
            return Ok((new, changes));
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = self.rv.to_string().into();
        let change = self.record(info.plural, &namespace, ChangeKind::Modified, &new);
        self.insert(key, &new);
        Ok((new, vec![change]))
    }

    /// Creates or updates (the whole object), for writes by the test itself.
    pub fn upsert(&mut self, info: &ResourceInfo, object: Value, part: Part) -> (Value, Vec<Arc<Change>>) {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let exists = self.objects.contains_key(&Self::key(info.plural, namespace, name));
        let result = if exists { self.update(info, object, part, None) } else { self.create(info, object) };
        result.unwrap_or((Value::Null, Vec::new()))
    }

    /// Deletes an object: with finalizers it only gets a deletion timestamp; without, it goes and
    /// its dependents are collected.
    pub fn delete(&mut self, info: &ResourceInfo, namespace: &str, name: &str) -> Vec<Arc<Change>> {
        self.delete_key(info.plural, namespace, name)
    }

    fn delete_key(&mut self, plural: &str, namespace: &str, name: &str) -> Vec<Arc<Change>> {
        let key = Self::key(plural, namespace, name);
        let Some(mut object) = self.objects.get(&key).map(Self::parse) else { return Vec::new() };
        let has_finalizers = object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if has_finalizers && object["metadata"].get("deletionTimestamp").is_some() {
            return Vec::new();
        }
        self.rv += 1;
        object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        if has_finalizers {
            object["metadata"]["deletionTimestamp"] = now_rfc3339().into();
            let change = self.record(plural, namespace, ChangeKind::Modified, &object);
            self.insert(key, &object);
            return vec![change];
        }
        let change = self.record(plural, namespace, ChangeKind::Deleted, &object);
        let uid = self.objects.remove(&key).map(|e| e.uid).unwrap_or_default();
        let mut changes = vec![change];
        changes.extend(self.collect_dependents(&uid));
        changes
    }

    /// Background garbage collection: every object owned by `uid` is deleted (recursively).
    fn collect_dependents(&mut self, uid: &str) -> Vec<Arc<Change>> {
        if uid.is_empty() {
            return Vec::new();
        }
        let dependents: Vec<Key> =
            self.objects.iter().filter(|(_, e)| e.owners.iter().any(|o| o == uid)).map(|(k, _)| k.clone()).collect();
        let mut changes = Vec::new();
        for (plural, namespace, name) in dependents {
            changes.extend(self.delete_key(&plural, &namespace, &name));
        }
        changes
    }
}

//! Which pipeline controls each child the controller watches — by kind, namespace and name, the
//! uid of its controlling owner — kept from the controller's metadata watches. It is all the
//! ownership check needs, a few bytes per child instead of a cached object.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::Resource;
use kube::runtime::watcher::Event;

type Key = (&'static str, String, String);

#[derive(Default)]
struct Index {
    controllers: HashMap<Key, String>,
    /// Kinds being re-listed: the keys seen so far (the rest are gone once the list is done).
    relisting: HashMap<&'static str, HashSet<(String, String)>>,
}

/// The controlling owner's uid of every watched child.
#[derive(Default)]
pub struct ChildIndex {
    index: Mutex<Index>,
}

fn key_of<K: Resource>(kind: &'static str, obj: &K) -> Key {
    let meta = obj.meta();
    (kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn controller_of<K: Resource>(obj: &K) -> String {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
        .unwrap_or_default()
}

impl ChildIndex {
    /// Follows one watch event of `kind`.
    pub fn observe<K: Resource>(&self, kind: &'static str, event: &Event<K>) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Apply(obj) => {
                index.controllers.insert(key_of(kind, obj), controller_of(obj));
            }
            Event::Delete(obj) => {
                index.controllers.remove(&key_of(kind, obj));
            }
            Event::Init => {
                index.relisting.insert(kind, HashSet::new());
            }
            Event::InitApply(obj) => {
                let key = key_of(kind, obj);
                index.relisting.entry(kind).or_default().insert((key.1.clone(), key.2.clone()));
                index.controllers.insert(key, controller_of(obj));
            }
            Event::InitDone => {
                let seen = index.relisting.remove(kind).unwrap_or_default();
                index.controllers.retain(|(k, ns, name), _| *k != kind || seen.contains(&(ns.clone(), name.clone())));
            }
        }
    }

    /// The controlling owner's uid of the `kind` child `namespace/name` (empty: none); `None`
    /// when the watch has not seen it.
    pub fn controller(&self, kind: &'static str, namespace: &str, name: &str) -> Option<String> {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.controllers.get(&(kind, namespace.to_string(), name.to_string())).cloned()
    }

    pub fn len(&self) -> usize {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).controllers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;

    fn deployment(name: &str, owner: Option<&str>) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "apps", "ownerReferences": owner.map(|uid| vec![serde_json::json!(
                {"apiVersion": "herald.dev/v1alpha1", "kind": "NotificationPipeline", "name": "p", "uid": uid, "controller": true})])},
        }))
        .unwrap()
    }

    #[test]
    fn follows_applies_deletes_and_relists() {
        let index = ChildIndex::default();
        index.observe("Deployment", &Event::Apply(deployment("a", Some("u-1"))));
        index.observe("Deployment", &Event::Apply(deployment("b", None)));
        assert_eq!(index.controller("Deployment", "apps", "a").as_deref(), Some("u-1"));
        assert_eq!(index.controller("Deployment", "apps", "b").as_deref(), Some(""));
        assert_eq!(index.controller("Service", "apps", "a"), None, "by kind");
        index.observe("Deployment", &Event::Delete(deployment("b", None)));
        assert_eq!(index.controller("Deployment", "apps", "b"), None);
        // A re-list that no longer has "a" but has "c".
        index.observe("Deployment", &Event::<Deployment>::Init);
        index.observe("Deployment", &Event::InitApply(deployment("c", Some("u-2"))));
        index.observe("Deployment", &Event::<Deployment>::InitDone);
        assert_eq!(index.controller("Deployment", "apps", "a"), None);
        assert_eq!(index.controller("Deployment", "apps", "c").as_deref(), Some("u-2"));
        assert_eq!(index.len(), 1);
    }
}

//! Labels and names of what a pipeline becomes.

use std::collections::BTreeMap;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "herald-operator";
/// `app.kubernetes.io/name` of every child.
pub const APP_NAME: &str = "herald";
/// `app.kubernetes.io/part-of` of every child.
pub const PART_OF: &str = "herald";
/// `app.kubernetes.io/managed-by` of every child.
pub const MANAGED_BY: &str = "herald-operator";

/// What a child is part of a pipeline for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Producer,
    Consumer,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Producer => "producer",
            Component::Consumer => "consumer",
        }
    }
}

/// `{pipeline}-producer` / `{pipeline}-consumer`.
pub fn child_name(pipeline: &str, component: Component) -> String {
    format!("{pipeline}-{}", component.as_str())
}

/// The labels that select a component's pods (stable for the life of the pipeline).
pub fn selector(pipeline: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
        ("app.kubernetes.io/instance".to_string(), pipeline.to_string()),
        ("app.kubernetes.io/component".to_string(), component.as_str().to_string()),
    ])
}

/// Every label of a component's objects: the selector plus `managed-by` and `part-of`.
pub fn labels(pipeline: &str, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector(pipeline, component);
    labels.insert("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string());
    labels.insert("app.kubernetes.io/part-of".to_string(), PART_OF.to_string());
    labels
}

/// A selector as the `key=value,...` string the scale subresource reports.
pub fn selector_string(pipeline: &str, component: Component) -> String {
    selector(pipeline, component).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

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

/// The longest pipeline name: its longest child name, `<name>-consumer-headless`, is a Service
/// and must fit a 63-character DNS-1035 label.
pub const MAX_PIPELINE_NAME: usize = 45;
/// The longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// Why `name` cannot name a pipeline (its children would be refused by the API server), or
/// `None`. The CRD's CEL rules say the same; this catches pipelines created before they existed.
pub fn pipeline_name_problem(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    if name.len() > MAX_PIPELINE_NAME {
        return Some(format!(
            "metadata.name {name:?} is {} characters; at most {MAX_PIPELINE_NAME} are allowed (<name>-consumer-headless must fit a 63-character DNS label)",
            name.len()
        ));
    }
    let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    (!valid).then(|| {
        format!(
            "metadata.name {name:?} must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit: it names the pipeline's Services (DNS-1035 labels)"
        )
    })
}

/// `raw` as a label value: unchanged when Kubernetes accepts it, else shortened (or its
/// disallowed characters replaced) and suffixed with a hash of the whole value, so that distinct
/// values stay distinct.
pub fn label_value(raw: &str) -> String {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let bytes = raw.as_bytes();
    let valid = raw.is_empty()
        || (raw.len() <= MAX_LABEL_VALUE
            && bytes.iter().all(|b| allowed(*b))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric));
    if valid {
        return raw.to_string();
    }
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    let cleaned: String =
        raw.bytes().map(|b| if allowed(b) { b as char } else { '-' }).take(MAX_LABEL_VALUE - 17).collect();
    let prefix = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() { format!("h{hash:016x}") } else { format!("{prefix}-{hash:016x}") }
}

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
        ("app.kubernetes.io/instance".to_string(), label_value(pipeline)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_names_that_make_valid_children() {
        assert_eq!(pipeline_name_problem("social"), None);
        assert_eq!(pipeline_name_problem("a1-b2"), None);
        assert_eq!(pipeline_name_problem(&"a".repeat(MAX_PIPELINE_NAME)), None);
        for bad in ["", "1social", "social.v2", "Social", "social-", "-social", "so_cial"] {
            assert!(pipeline_name_problem(bad).is_some_and(|m| m.contains("lowercase letters")), "{bad:?}");
        }
        let long = "a".repeat(MAX_PIPELINE_NAME + 1);
        assert!(pipeline_name_problem(&long).is_some_and(|m| m.contains("at most 45")));
    }

    #[test]
    fn label_values_stay_valid_and_distinct() {
        assert_eq!(label_value("social"), "social");
        assert_eq!(label_value(&"a".repeat(63)), "a".repeat(63));
        let long_a = label_value(&format!("{}a", "x".repeat(70)));
        let long_b = label_value(&format!("{}b", "x".repeat(70)));
        for v in [&long_a, &long_b] {
            assert!(v.len() <= MAX_LABEL_VALUE, "{v}");
            assert!(v.as_bytes()[0].is_ascii_alphanumeric() && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric());
        }
        assert_ne!(long_a, long_b);
        assert_eq!(long_a, label_value(&format!("{}a", "x".repeat(70))), "stable");
        let odd = label_value("apps/social");
        assert!(odd.starts_with("apps-social-") && odd.len() <= MAX_LABEL_VALUE, "{odd}");
        assert!(label_value("---").starts_with('h'));
    }
}

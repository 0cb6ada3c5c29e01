//! Label selectors written as `kubectl -l` takes them (`team=platform,env in (prod,staging),!legacy`),
//! for flags such as `--metrics-namespace-selector`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Parses `raw` into a [`LabelSelector`]; empty (or only spaces) selects everything.
///
/// Requirements are separated by commas outside parentheses: `key=value` (or `==`), `key!=value`,
/// `key in (a,b)`, `key notin (a,b)`, `key` (exists) and `!key` (does not exist).
pub fn parse(raw: &str) -> Result<LabelSelector, String> {
    let mut labels = BTreeMap::new();
    let mut expressions = Vec::new();
    for part in split(raw)? {
        let part = part.trim();
        if part.is_empty() {
            if raw.trim().is_empty() {
                continue;
            }
            return Err(format!("{raw:?}: an empty requirement (two commas in a row, or a trailing comma)"));
        }
        let requirement = |key: &str, operator: &str, values: Option<Vec<String>>| -> Result<_, String> {
            Ok(LabelSelectorRequirement { key: checked_key(key)?, operator: operator.to_string(), values })
        };
        if let Some(key) = part.strip_prefix('!') {
            expressions.push(requirement(key.trim(), "DoesNotExist", None)?);
        } else if let Some((key, value)) = part.split_once("!=") {
            expressions.push(requirement(key.trim(), "NotIn", Some(vec![checked_value(value.trim())?]))?);
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            labels.insert(checked_key(key.trim())?, checked_value(value.trim())?);
        } else if let Some((key, operator, values)) = set_based(part) {
            let values = values.split(',').map(|v| checked_value(v.trim())).collect::<Result<Vec<_>, _>>()?;
            expressions.push(requirement(key, operator, Some(values))?);
        } else if part.contains(['(', ')', ' ']) {
            return Err(format!(
                "{part:?}: expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
            ));
        } else {
            expressions.push(requirement(part, "Exists", None)?);
        }
    }
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}

/// `raw` split at the commas outside parentheses.
fn split(raw: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0u32, 0);
    for (i, c) in raw.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("{raw:?}: nested parentheses")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("{raw:?}: a ')' without '('")),
            ',' if depth == 0 => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("{raw:?}: a '(' without ')'"));
    }
    parts.push(&raw[start..]);
    Ok(parts)
}

/// `key in (a,b)` or `key notin (a,b)`: the key, the operator and the values between the
/// parentheses.
fn set_based(part: &str) -> Option<(&str, &'static str, &str)> {
    let (head, values) = part.split_once('(')?;
    let values = values.strip_suffix(')')?;
    let mut words = head.split_whitespace();
    let key = words.next()?;
    let operator = match words.next()? {
        "in" => "In",
        "notin" => "NotIn",
        _ => return None,
    };
    words.next().is_none().then_some((key, operator, values))
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn checked_key(key: &str) -> Result<String, String> {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    if !prefix_ok || name.is_empty() || !name_like(name) {
        return Err(format!("{key:?} is not a label key"));
    }
    Ok(key.to_string())
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`, alphanumeric at both ends.
fn checked_value(value: &str) -> Result<String, String> {
    if value.is_empty() || name_like(value) {
        Ok(value.to_string())
    } else {
        Err(format!("{value:?} is not a label value"))
    }
}

fn name_like(s: &str) -> bool {
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn empty_selects_everything() {
        assert_eq!(parse("").unwrap(), LabelSelector::default());
        assert_eq!(parse("  ").unwrap(), LabelSelector::default());
    }

    #[test]
    fn every_kubectl_form() {
        let s = parse("kubernetes.io/metadata.name=monitoring, tier==ops,env in (prod, staging),zone notin (a),team!=x,scraped,!legacy").unwrap();
        assert_eq!(
            s.match_labels.unwrap(),
            BTreeMap::from([
                ("kubernetes.io/metadata.name".to_string(), "monitoring".to_string()),
                ("tier".to_string(), "ops".to_string())
            ])
        );
        assert_eq!(
            s.match_expressions.unwrap(),
            vec![
                req("env", "In", Some(&["prod", "staging"])),
                req("zone", "NotIn", Some(&["a"])),
                req("team", "NotIn", Some(&["x"])),
                req("scraped", "Exists", None),
                req("legacy", "DoesNotExist", None),
            ]
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (raw, says) in [
            ("a=b,", "empty requirement"),
            ("a in (b", "without ')'"),
            ("a in ((b))", "nested"),
            ("a b", "expected key=value"),
            ("a=b c", "not a label value"),
            ("-a=b", "not a label key"),
            ("Example.com/a=b", "not a label key"),
            ("a=-b", "not a label value"),
            ("a like (b)", "expected key=value"),
        ] {
            let err = parse(raw).unwrap_err();
            assert!(err.contains(says), "{raw}: {err}");
        }
    }
}

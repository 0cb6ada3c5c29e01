//! The Kubernetes `restricted` Pod Security Standard, checked on a pod spec (as JSON): what the
//! admission controller would refuse, one message per violation.

use serde_json::Value;

const ALLOWED_VOLUMES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

/// Violations of the restricted profile in `pod` (a PodSpec).
pub fn violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(&pod[host]) {
            found.push(format!("{host} is true"));
        }
    }
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&str> =
            volume.as_object().into_iter().flatten().map(|(k, _)| k.as_str()).filter(|k| *k != "name").collect();
        for kind in kinds {
            if !ALLOWED_VOLUMES.contains(&kind) {
                found.push(format!("volume {} is of type {kind}", volume["name"]));
            }
        }
    }
    let pod_sc = &pod["securityContext"];
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten());
    let mut any = false;
    for c in containers {
        any = true;
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        if is_true(&sc["privileged"]) {
            found.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            found.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let non_root = sc["runAsNonRoot"].as_bool().or(pod_sc["runAsNonRoot"].as_bool());
        if non_root != Some(true) {
            found.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64()) == Some(0) {
            found.push(format!("{name}: runAsUser is 0"));
        }
        let seccomp = sc["seccompProfile"]["type"].as_str().or(pod_sc["seccompProfile"]["type"].as_str());
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            found.push(format!("{name}: seccompProfile is not RuntimeDefault or Localhost"));
        }
        let drops: Vec<&str> =
            sc["capabilities"]["drop"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if !drops.contains(&"ALL") {
            found.push(format!("{name}: capabilities do not drop ALL"));
        }
        for add in sc["capabilities"]["add"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if add != "NET_BIND_SERVICE" {
                found.push(format!("{name}: adds capability {add}"));
            }
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_i64().is_some_and(|p| p != 0) {
                found.push(format!("{name}: hostPort"));
            }
        }
    }
    if !any {
        found.push("no containers".into());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unhardened_pod_is_reported_point_by_point() {
        let pod = serde_json::json!({
            "hostNetwork": true,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}],
        });
        let v = violations(&pod);
        for expected in [
            "hostNetwork",
            "hostPath",
            "privileged",
            "allowPrivilegeEscalation",
            "runAsNonRoot",
            "seccompProfile",
            "drop ALL",
            "SYS_ADMIN",
        ] {
            assert!(v.iter().any(|m| m.contains(expected)), "{expected} not in {v:?}");
        }
    }
}

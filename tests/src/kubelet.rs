//! What the kubelet does with the files of Secret and ConfigMap volumes, and whether a container
//! can read the files it is told to read.
//!
//! The kubelet writes each projected key as a file owned by root. Its mode is the item's `mode`,
//! else the volume's `defaultMode`, else 0644. With a pod `fsGroup`, the file's group becomes
//! that group and the group-read bits are added (these volumes are read-only: mode | 0440), and
//! the container's processes carry the fsGroup as a supplementary group. Without fsGroup the file
//! stays root:root with its mode. A process reads a file when it runs as root, or when the
//! owner, group or other bits that apply to it allow reading.
//!
//! The files a Herald container reads are named by its environment: every `*_FILE` variable and
//! every `*.location` Kafka property in `HERALD_KAFKA_PROPERTIES`.

use serde_json::Value;

/// A file a container reads and why it cannot, if it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub container: String,
    pub path: String,
    /// `None` when the container can read the file.
    pub problem: Option<String>,
}

/// The files each container of `pod` (a PodSpec as JSON) reads, from its environment.
pub fn files_read(container: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (e["name"].as_str(), e["value"].as_str()) else { continue };
        if name.ends_with("_FILE") {
            paths.push(value.to_string());
        }
        if name == "HERALD_KAFKA_PROPERTIES" {
            for property in value.split(',') {
                if let Some((key, path)) = property.split_once('=')
                    && key.trim().ends_with(".location")
                {
                    paths.push(path.trim().to_string());
                }
            }
        }
    }
    paths
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// Where `path` comes from in `pod`: the volume projecting it and the key's mode, or why none does.
fn projected_file(pod: &Value, container: &Value, path: &str) -> Result<i64, String> {
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let dir = m["mountPath"].as_str()?.trim_end_matches('/');
            let rest = path.strip_prefix(dir)?.strip_prefix('/')?;
            Some((m, rest.to_string()))
        })
        .max_by_key(|(m, _)| m["mountPath"].as_str().map_or(0, str::len));
    let Some((mount, relative)) = mount else {
        return Err("no volume is mounted there".into());
    };
    let volume_name = mount["name"].as_str().unwrap_or_default();
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == volume_name)
        .ok_or_else(|| format!("volume {volume_name} is mounted but not defined"))?;
    let source = ["secret", "configMap"]
        .iter()
        .find_map(|kind| volume.get(*kind))
        .ok_or_else(|| format!("volume {volume_name} is neither a Secret nor a ConfigMap"))?;
    let default_mode = int(&source["defaultMode"]).unwrap_or(0o644);
    match source["items"].as_array() {
        Some(items) => items
            .iter()
            .find(|i| i["path"].as_str() == Some(relative.as_str()))
            .map(|i| int(&i["mode"]).unwrap_or(default_mode))
            .ok_or_else(|| format!("volume {volume_name} projects no item at {relative}")),
        // Without items every key becomes a file of its own name.
        None => Ok(default_mode),
    }
}

/// Every file each container of `pod` reads, and whether it can.
pub fn check_files(pod: &Value) -> Vec<FileCheck> {
    let pod_sc = &pod["securityContext"];
    let fs_group = int(&pod_sc["fsGroup"]);
    let mut checks = Vec::new();
    for container in ["initContainers", "containers"].iter().flat_map(|k| pod[*k].as_array().into_iter().flatten()) {
        let name = container["name"].as_str().unwrap_or("?").to_string();
        let sc = &container["securityContext"];
        let uid = int(&sc["runAsUser"]).or_else(|| int(&pod_sc["runAsUser"]));
        let gid = int(&sc["runAsGroup"]).or_else(|| int(&pod_sc["runAsGroup"]));
        let mut groups: Vec<i64> =
            pod_sc["supplementalGroups"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
        groups.extend(gid);
        groups.extend(fs_group);
        for path in files_read(container) {
            let problem = match (uid, projected_file(pod, container, &path)) {
                (_, Err(why)) => Some(why),
                (None, _) => Some("no runAsUser: the image's user decides, which this check cannot see".into()),
                (Some(uid), Ok(mode)) => {
                    let (owner, group) = (0, fs_group.unwrap_or(0));
                    let mode = if fs_group.is_some() { mode | 0o440 } else { mode };
                    let bit = if uid == 0 {
                        0o444
                    } else if uid == owner {
                        0o400
                    } else if groups.contains(&group) {
                        0o040
                    } else {
                        0o004
                    };
                    (mode & bit == 0).then(|| {
                        format!(
                            "mode {mode:o}, owner {owner}:{group}; the process runs as {uid} with groups {groups:?}"
                        )
                    })
                }
            };
            checks.push(FileCheck { container: name.clone(), path, problem });
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(fs_group: Option<i64>, default_mode: i64) -> Value {
        let mut pod = serde_json::json!({
            "securityContext": {"runAsUser": 65532, "runAsGroup": 65532},
            "containers": [{
                "name": "producer",
                "env": [
                    {"name": "HERALD_AUTH_TOKEN_FILE", "value": "/etc/herald/auth/token"},
                    {"name": "HERALD_KAFKA_PROPERTIES", "value": "linger.ms=1,ssl.ca.location=/etc/herald/ca/ca.crt"},
                ],
                "volumeMounts": [
                    {"name": "auth", "mountPath": "/etc/herald/auth"},
                    {"name": "ca", "mountPath": "/etc/herald/ca"},
                ],
            }],
            "volumes": [
                {"name": "auth", "secret": {"secretName": "t", "defaultMode": default_mode,
                    "items": [{"key": "token", "path": "token"}]}},
                {"name": "ca", "configMap": {"name": "ca"}},
            ],
        });
        if let Some(g) = fs_group {
            pod["securityContext"]["fsGroup"] = g.into();
        }
        pod
    }

    #[test]
    fn root_owned_0440_files_need_an_fs_group() {
        let unreadable: Vec<_> = check_files(&pod(None, 0o440)).into_iter().filter(|c| c.problem.is_some()).collect();
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
        assert_eq!(unreadable[0].path, "/etc/herald/auth/token");
        assert!(check_files(&pod(Some(65532), 0o440)).iter().all(|c| c.problem.is_none()));
        // 0400 is still group-readable with an fsGroup: the kubelet adds the group bits.
        assert!(check_files(&pod(Some(65532), 0o400)).iter().all(|c| c.problem.is_none()));
        // World-readable files need nothing.
        assert!(check_files(&pod(None, 0o444)).iter().all(|c| c.problem.is_none()));
    }

    #[test]
    fn a_file_outside_every_mount_is_reported() {
        let mut p = pod(Some(65532), 0o440);
        p["containers"][0]["env"][0]["value"] = "/etc/herald/elsewhere/token".into();
        let checks = check_files(&p);
        assert_eq!(checks[0].problem.as_deref(), Some("no volume is mounted there"));
    }
}

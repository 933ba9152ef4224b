//! Finding a running pod's processes on the host: the kubelet puts every
//! container of a pod in a cgroup named after the pod's UID, and the runtime
//! names each container's cgroup after its ID. `/proc/<pid>/cgroup` therefore
//! tells which pod and container a process belongs to:
//!
//! | cgroup driver | path                                                                  |
//! |---------------|-----------------------------------------------------------------------|
//! | cgroupfs      | `/kubepods/burstable/pod<uid>/<id>`                                   |
//! | systemd       | `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope` (`crio-<id>.scope`, `docker-<id>.scope`) |
//!
//! Paths may start anywhere (a cgroup namespace shows `/../..` above its root),
//! so the pod's segment is searched for, not expected at a fixed depth.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// One process of one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProcess {
    pub pid: u32,
    pub container_id: String,
}

/// Every process under `proc_root` that runs in a pod container, by pod UID.
/// Processes that exit while being read are simply not listed.
pub fn pod_processes(proc_root: &Path) -> BTreeMap<String, Vec<PodProcess>> {
    let mut pods: BTreeMap<String, Vec<PodProcess>> = BTreeMap::new();
    let Ok(entries) = fs::read_dir(proc_root) else {
        return pods;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = fs::read_to_string(entry.path().join("cgroup")) else {
            continue;
        };
        if let Some((uid, container_id)) = pod_container(&text) {
            pods.entry(uid)
                .or_default()
                .push(PodProcess { pid, container_id });
        }
    }
    for processes in pods.values_mut() {
        processes.sort_by_key(|p| p.pid);
    }
    pods
}

/// The pod UID and container ID in the contents of `/proc/<pid>/cgroup`.
/// The unified (`0::`) line is preferred; on a hybrid host any v1 line naming
/// the pod does as well.
pub fn pod_container(cgroup_file: &str) -> Option<(String, String)> {
    let paths = cgroup_file.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, _controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((id == "0", path))
    });
    let (unified, legacy): (Vec<_>, Vec<_>) = paths.partition(|(unified, _)| *unified);
    unified
        .into_iter()
        .chain(legacy)
        .find_map(|(_, path)| pod_container_in_path(path))
}

fn pod_container_in_path(path: &str) -> Option<(String, String)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (index, uid) = segments
        .iter()
        .enumerate()
        .find_map(|(index, segment)| Some((index, pod_uid(segment)?)))?;
    // The container's cgroup is the one right below the pod's; deeper ones are
    // the container's own (systemd inside a container, say).
    let container_id = container_id(segments.get(index + 1)?)?;
    Some((uid, container_id))
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_with_underscores>.slice`
/// (systemd, which reserves `-` as its hierarchy separator).
fn pod_uid(segment: &str) -> Option<String> {
    let raw = if let Some(slice) = segment.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        uid.replace('_', "-")
    } else {
        segment.strip_prefix("pod")?.to_owned()
    };
    let looks_like_uid = !raw.is_empty()
        && raw.len() <= 64
        && raw.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    looks_like_uid.then(|| raw.to_ascii_lowercase())
}

/// `<id>` (cgroupfs) or `<runtime>-<id>.scope` (systemd). CRI-O's
/// `crio-conmon-<id>.scope` is its monitor process, not the container.
fn container_id(segment: &str) -> Option<String> {
    let id = match segment.strip_suffix(".scope") {
        Some(scope) => {
            if scope.starts_with("crio-conmon-") {
                return None;
            }
            let (_, id) = scope.rsplit_once('-')?;
            id
        }
        None => segment,
    };
    // Runtimes use 64 hex digits; shorter ones are not container IDs.
    let plausible = (12..=127).contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit());
    plausible.then(|| id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5e2c8a4b-1f0d-4c3e-9a7b-2d6f8e1c0b9a";
    const ID: &str = "3f4a9c1e2b7d8f6a5c4b3a2918273645f0e1d2c3b4a5968778695a4b3c2d1e0f";

    /// The lines name the test pod's UID and container ID.
    fn assert_names_the_pod(text: &str) {
        assert_eq!(
            pod_container(text),
            Some((UID.into(), ID.into())),
            "{text:?}"
        );
    }

    #[test]
    fn cgroupfs_driver() {
        assert_names_the_pod(&format!("0::/kubepods/burstable/pod{UID}/{ID}\n"));
        // Guaranteed pods sit right under kubepods.
        assert_names_the_pod(&format!("0::/kubepods/pod{UID}/{ID}\n"));
    }

    #[test]
    fn systemd_driver_and_runtimes() {
        let underscored = UID.replace('-', "_");
        for (qos, scope) in [
            ("kubepods-burstable", format!("cri-containerd-{ID}.scope")),
            ("kubepods-besteffort", format!("crio-{ID}.scope")),
            ("kubepods", format!("docker-{ID}.scope")),
        ] {
            let text =
                format!("0::/kubepods.slice/{qos}.slice/{qos}-pod{underscored}.slice/{scope}\n");
            assert_names_the_pod(&text);
        }
        let conmon =
            format!("0::/kubepods.slice/kubepods-pod{underscored}.slice/crio-conmon-{ID}.scope");
        assert_eq!(pod_container(&conmon), None);
    }

    #[test]
    fn paths_seen_from_a_cgroup_namespace_and_nested_cgroups() {
        assert_names_the_pod(&format!(
            "0::/../../kubepods/besteffort/pod{UID}/{ID}/init.scope\n"
        ));
        // The test harness's layout: under a test cgroup.
        assert_names_the_pod(&format!(
            "0::/meshlane-test-1-0/kubepods/burstable/pod{UID}/{ID}\n"
        ));
    }

    #[test]
    fn hybrid_hosts_use_any_line_naming_the_pod() {
        let text = format!(
            "12:memory:/kubepods/burstable/pod{UID}/{ID}\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n\
             0::/\n"
        );
        assert_names_the_pod(&text);
    }

    #[test]
    fn other_processes_are_not_pods() {
        for text in [
            "0::/user.slice/user-1000.slice/session-2.scope\n".to_owned(),
            "0::/system.slice/containerd.service\n".to_owned(),
            // The pod's own cgroup, with no container below it.
            format!("0::/kubepods/burstable/pod{UID}\n"),
            format!("0::/kubepods/burstable/pod{UID}/not-an-id\n"),
            "0::/kubepods/burstable/podcast/1234567890abcdef\n".to_owned(),
            String::new(),
        ] {
            assert_eq!(pod_container(&text), None, "{text:?}");
        }
    }
}

//! Which of a pod's containers is its sandbox (the `pause` container that holds
//! the network namespace). The runtime's CNI calls name the sandbox's ID, so an
//! enrolled pod's attachment must carry it for the runtime's DEL to find it.
//! The kubelet reports every container of a pod except the sandbox, so the
//! sandbox is the one running container the pod's status does not list.

use super::procfs::PodProcess;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sandbox {
    /// The sandbox's container ID and one of its processes.
    Known { id: String, pid: u32 },
    /// No single unlisted container: `pid` is any process of the pod (all of
    /// them share its network namespace).
    Unknown { reason: String, pid: u32 },
}

impl Sandbox {
    /// The process whose network namespace is the pod's.
    pub fn pid(&self) -> u32 {
        match self {
            Sandbox::Known { pid, .. } | Sandbox::Unknown { pid, .. } => *pid,
        }
    }
}

/// `processes` are the pod's (sorted by PID), `listed` the container IDs of
/// its status. `None` when the pod has no process at all.
pub fn find_sandbox(processes: &[PodProcess], listed: &[String]) -> Option<Sandbox> {
    let first = processes.first()?;
    let mut unlisted: Vec<&PodProcess> = Vec::new();
    for process in processes {
        let known = listed.contains(&process.container_id);
        let counted = unlisted
            .iter()
            .any(|p| p.container_id == process.container_id);
        if !known && !counted {
            unlisted.push(process);
        }
    }
    match unlisted.as_slice() {
        [one] => Some(Sandbox::Known {
            id: one.container_id.clone(),
            pid: one.pid,
        }),
        [] => Some(Sandbox::Unknown {
            reason: "every running container is listed in the pod's status \
                     (the runtime shows no sandbox process)"
                .to_owned(),
            pid: first.pid,
        }),
        several => Some(Sandbox::Unknown {
            reason: format!(
                "{} running containers are not listed in the pod's status",
                several.len()
            ),
            pid: several[0].pid,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, id: &str) -> PodProcess {
        PodProcess {
            pid,
            container_id: id.to_owned(),
        }
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| id.to_string()).collect()
    }

    #[test]
    fn the_unlisted_container_is_the_sandbox() {
        let processes = [
            process(100, "pause"),
            process(120, "app"),
            process(121, "app"),
            process(130, "proxy"),
        ];
        assert_eq!(
            find_sandbox(&processes, &ids(&["app", "proxy", "init-done"])),
            Some(Sandbox::Known {
                id: "pause".into(),
                pid: 100
            })
        );
    }

    #[test]
    fn no_or_several_candidates_are_unknown() {
        let processes = [process(7, "app"), process(9, "x"), process(11, "y")];
        match find_sandbox(&processes, &ids(&["app"])) {
            Some(Sandbox::Unknown { pid, reason }) => {
                assert_eq!(pid, 9);
                assert!(reason.starts_with("2 running containers"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match find_sandbox(&processes, &ids(&["app", "x", "y"])) {
            Some(Sandbox::Unknown { pid, .. }) => assert_eq!(pid, 7),
            other => panic!("{other:?}"),
        }
        assert_eq!(find_sandbox(&[], &ids(&["app"])), None);
    }
}

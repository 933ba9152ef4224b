//! No pod before capture: new nodes carry a startup taint (default
//! `meshlane.io/agent-not-ready:NoSchedule`, README), so the scheduler places no
//! pod there until this agent is ready; the agent then removes it from its own
//! node. RBAC cannot narrow `patch nodes` to one node or one field: the
//! ValidatingAdmissionPolicy in manifests/ does (own node, taints only).
//!
//! The taint goes with a read-then-patch that names the resourceVersion it
//! read: when the node changed in between (kubelet's status is a subresource,
//! but labels or other taints may change), the API server answers 409 and the
//! agent reads it again, a few times.

use std::time::{Duration, Instant};

use crate::kube::node::{get_node, patch_node, NodeTaints};
use crate::kube::{FetchPolicy, KubeAccess, KubeError};

/// Read-then-patch rounds before giving up until the next try.
const CONFLICT_ROUNDS: u32 = 5;
/// A failed removal is tried again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What one removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed {
        conflicts: u32,
    },
    /// The node has no such taint (it was never added, or is gone already).
    Absent,
}

/// Removes every taint with `key` from node `node`.
pub fn remove(
    access: &KubeAccess,
    node: &str,
    key: &str,
    policy: &FetchPolicy,
) -> Result<Removal, KubeError> {
    let mut conflicts = 0;
    loop {
        let read = NodeTaints::from_json(node, &get_node(access, node, policy)?)?;
        if !read.has(key) {
            return Ok(Removal::Absent);
        }
        match patch_node(access, node, &read.removal_patch(key), policy) {
            Ok(_) => return Ok(Removal::Removed { conflicts }),
            Err(KubeError::Conflict { .. }) if conflicts + 1 < CONFLICT_ROUNDS => conflicts += 1,
            Err(err) => return Err(err),
        }
    }
}

/// The agent's side: remove the taint once, after the agent is first ready.
pub struct StartupTaint {
    key: String,
    node: String,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending { not_before: Option<Instant> },
    Done,
}

impl StartupTaint {
    pub fn new(key: String, node: String) -> StartupTaint {
        StartupTaint {
            key,
            node,
            state: State::Pending { not_before: None },
        }
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Tries the removal when the agent is ready and a try is due.
    pub fn tick(&mut self, ready: bool, access: impl FnOnce() -> Result<KubeAccess, KubeError>) {
        let State::Pending { not_before } = self.state else {
            return;
        };
        if !ready || not_before.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let outcome = access()
            .and_then(|access| remove(&access, &self.node, &self.key, &FetchPolicy::default()));
        let fields: [(&str, &dyn std::fmt::Display); 2] =
            [("node", &self.node), ("taint", &self.key)];
        match outcome {
            Ok(Removal::Removed { conflicts }) => {
                crate::log::info(
                    "ready: removed the startup taint, pods may be scheduled here",
                    &[fields[0], fields[1], ("conflicts", &conflicts)],
                );
                self.state = State::Done;
            }
            Ok(Removal::Absent) => {
                crate::log::info("ready; the node has no startup taint", &fields);
                self.state = State::Done;
            }
            Err(err) => {
                crate::log::error(
                    "cannot remove the startup taint (will retry)",
                    &[
                        fields[0],
                        fields[1],
                        ("error", &err),
                        ("retry_in", &format!("{RETRY_AFTER:?}")),
                    ],
                );
                self.state = State::Pending {
                    not_before: Some(Instant::now() + RETRY_AFTER),
                };
            }
        }
    }
}

//! Names and address ranges of everything a test creates.
//!
//! Every name carries the PID of the test process: a later run sweeps the leftovers
//! of a crashed run (its PID is dead) without touching the items of a run that is
//! still alive (see `sweep.rs`).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Network namespaces: `mlt-<pid>-<n>-node`, `mlt-<pid>-<n>-<pod>`.
pub const NETNS_PREFIX: &str = "mlt-";
/// Cgroups (`<cgroup2>/meshlane-test-<pid>-<n>`) and temp dirs (`/tmp/meshlane-test-<pid>-<n>`).
pub const DIR_PREFIX: &str = "meshlane-test-";
/// Fixed rather than `std::env::temp_dir()`: the sweep of a later run, whose TMPDIR
/// may differ, must find the leftovers.
pub const TMP_ROOT: &str = "/tmp";

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);

/// Identifies one test node: the test process's PID plus a per-process counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceId {
    pub pid: u32,
    pub n: u32,
}

impl InstanceId {
    pub fn next() -> Self {
        InstanceId {
            pid: std::process::id(),
            n: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// `mlt-<pid>-<n>-`: every netns of this instance starts with it.
    pub fn netns_prefix(&self) -> String {
        format!("{NETNS_PREFIX}{}-{}-", self.pid, self.n)
    }

    pub fn netns_name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.netns_prefix())
    }

    /// `meshlane-test-<pid>-<n>`: the cgroup's and the temp dir's name.
    pub fn dir_name(&self) -> String {
        format!("{DIR_PREFIX}{}-{}", self.pid, self.n)
    }

    /// At most 15 characters (IFNAMSIZ - 1): `mlb` + up to 6 hex digits of the PID
    /// (pid_max ≤ 2^22) + 2 of the counter.
    pub fn bridge_name(&self) -> String {
        format!("mlb{:x}{:02x}", self.pid, self.n & 0xff)
    }

    /// 16 bits that differ between the nodes of one process (up to 64 of them) and
    /// usually between processes. The subnets live inside the node netns only, so a
    /// clash would not break anything; distinct ones make logs unambiguous.
    fn subnet_bits(&self) -> (u32, u32) {
        let v = (self.pid.wrapping_mul(64).wrapping_add(self.n)) & 0xffff;
        (v >> 8, v & 0xff)
    }

    pub fn subnet_v4(&self) -> String {
        let (x, y) = self.subnet_bits();
        format!("10.{x}.{y}.0/24")
    }

    pub fn subnet_v6(&self) -> String {
        let (x, y) = self.subnet_bits();
        format!("fd00:{x:x}:{y:x}::/64")
    }
}

/// The PID embedded in a test item's name (`mlt-<pid>-…`, `meshlane-test-<pid>-…`), or
/// `None` when the name is not one of ours.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(NETNS_PREFIX)
        .or_else(|| name.strip_prefix(DIR_PREFIX))?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// A PID counts as alive while `/proc/<pid>` exists. A reused PID makes the sweep keep
/// a leftover for longer, never remove a live run's items.
pub fn pid_is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Pod names become part of netns names and log files: keep them short and plain.
pub fn check_pod_name(name: &str) {
    let plain = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    assert!(
        plain && name != "node",
        "pod name {name:?} must be 1-20 characters of [a-z0-9] and not \"node\""
    );
}

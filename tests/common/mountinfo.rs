//! The mount table of the test process, from /proc/self/mountinfo, read with
//! meshlane's own parser (`datapath::cgroup::parse_mountinfo`).

use std::fs;
use std::path::PathBuf;

pub use meshlane::datapath::cgroup::Mount;
use meshlane::datapath::cgroup::{find_cgroup2_mount, parse_mountinfo};

fn mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

pub fn mounts() -> Vec<Mount> {
    parse_mountinfo(&mountinfo())
}

/// The cgroup2 mount point. Hybrid hosts mount it at `/sys/fs/cgroup/unified`, so it
/// is looked up, never hard-coded.
pub fn cgroup2_mount() -> Option<PathBuf> {
    find_cgroup2_mount(&mountinfo())
}

/// Every cgroup mount: the cgroup2 one, and on hybrid hosts each v1 hierarchy.
pub fn cgroup_mounts() -> Vec<Mount> {
    mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

/// Mount points whose path starts with `prefix` (a string prefix, so
/// `/tmp/meshlane-test-12-` matches every instance of PID 12), deepest first.
pub fn mounts_under(prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|point| point.to_string_lossy().starts_with(prefix))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

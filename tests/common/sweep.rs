//! Removes what crashed test runs left behind: netns, cgroups, bpffs mounts and temp
//! dirs whose name carries a PID that is no longer alive. Items of live runs (other
//! test processes running right now, or this one) are never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use super::names::{owner_pid, pid_is_alive, DIR_PREFIX, NETNS_PREFIX, TMP_ROOT};
use super::{bpffs, cgroup, mountinfo, netns, tmpdir};

static SWEEP: Once = Once::new();

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub removed: Vec<String>,
    pub problems: Vec<String>,
}

impl SweepReport {
    fn record(&mut self, what: String, result: Result<(), String>) {
        match result {
            Ok(()) => self.removed.push(what),
            Err(err) => self.problems.push(format!("{what}: {err}")),
        }
    }
}

/// Sweeps once per test process (the first node to be built does it).
pub fn sweep_leftovers_once() {
    SWEEP.call_once(|| {
        let report = sweep_leftovers();
        for item in &report.removed {
            eprintln!("[harness] swept leftover of a dead test run: {item}");
        }
        for problem in &report.problems {
            eprintln!("[harness] sweep: {problem}");
        }
    });
}

fn is_dead_leftover(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| !pid_is_alive(pid))
}

/// One sweep. Order matters: processes die with their cgroup before their netns
/// goes, and bpffs instances are unmounted before their temp dir is removed.
pub fn sweep_leftovers() -> SweepReport {
    let mut report = SweepReport::default();

    if let Some(root) = mountinfo::cgroup2_mount() {
        for dir in dead_entries(&root) {
            let what = format!("cgroup {}", dir.display());
            report.record(what, cgroup::kill_and_remove(&dir));
        }
    }
    // A containerd node's children of the v1 hierarchies (hybrid hosts); their
    // processes died with the cgroup2 twin above.
    for mount in mountinfo::cgroup_mounts() {
        if mount.fstype == "cgroup2" {
            continue;
        }
        for dir in dead_entries(&mount.mount_point) {
            let what = format!("cgroup {}", dir.display());
            report.record(what, cgroup::remove_dirs_deepest_first(&dir));
        }
    }

    for name in netns::list_named(NETNS_PREFIX) {
        if is_dead_leftover(&name) {
            report.record(format!("netns {name}"), netns::delete_named(&name));
        }
    }

    let tmp_prefix = format!("{TMP_ROOT}/{DIR_PREFIX}");
    for mount_point in mountinfo::mounts_under(&tmp_prefix) {
        if owning_dir_name(&mount_point).is_some_and(|name| is_dead_leftover(&name)) {
            let what = format!("mount {}", mount_point.display());
            report.record(what, bpffs::unmount(&mount_point));
        }
    }

    for dir in dead_entries(Path::new(TMP_ROOT)) {
        let what = format!("temp dir {}", dir.display());
        report.record(what, tmpdir::remove_unless_mounted(&dir));
    }
    report
}

/// Directories `<parent>/meshlane-test-<dead pid>-<n>`.
fn dead_entries(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(DIR_PREFIX) && is_dead_leftover(&name)
        })
        .map(|entry| entry.path())
        .collect()
}

/// `/tmp/meshlane-test-12-0/bpffs` → `meshlane-test-12-0`.
fn owning_dir_name(mount_point: &Path) -> Option<String> {
    let relative = mount_point.strip_prefix(TMP_ROOT).ok()?;
    let first = relative.components().next()?;
    Some(first.as_os_str().to_string_lossy().into_owned())
}

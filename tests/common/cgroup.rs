//! The hooked child cgroup: meshlane's cgroup programs are attached here, and every
//! process a test spawns is moved here (never the test runner, never the root cgroup).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::held::HeldPath;
use super::timing::{poll, wait_until};

/// How long killed processes may take to leave a cgroup before rmdir gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A child cgroup of the cgroup2 root that is killed and removed on drop.
#[derive(Debug)]
pub struct TestCgroup {
    held: HeldPath,
}

impl TestCgroup {
    pub fn create(path: PathBuf) -> io::Result<Self> {
        fs::create_dir(&path)?;
        Ok(TestCgroup {
            held: HeldPath::new("cgroup", path, kill_and_remove),
        })
    }

    pub fn path(&self) -> &Path {
        self.held.path()
    }

    /// The file a process writes `0` to in order to move itself in.
    pub fn procs_file(&self) -> PathBuf {
        self.path().join("cgroup.procs")
    }

    pub fn pids(&self) -> Vec<i32> {
        read_pids(self.path())
    }

    /// SIGKILLs every process in the cgroup and its descendants and waits until
    /// they are gone.
    pub fn kill_all(&self) -> Result<(), String> {
        if !self.held.is_held() {
            return Ok(());
        }
        kill_tree(self.path())
    }

    /// Kills what is left and removes the cgroup (descendants first). Idempotent.
    pub fn remove(&mut self) -> Result<(), String> {
        self.held.release()
    }
}

fn read_pids(cgroup: &Path) -> Vec<i32> {
    fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// `populated 1` in cgroup.events while any process lives in the subtree.
fn is_populated(cgroup: &Path) -> bool {
    fs::read_to_string(cgroup.join("cgroup.events"))
        .map(|events| events.lines().any(|line| line == "populated 1"))
        .unwrap_or(false)
}

/// Every cgroup below `root` (inclusive), deepest first: the order rmdir needs.
fn subtree_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(subtree_deepest_first(&entry.path()));
            }
        }
    }
    out.push(root.to_path_buf());
    out
}

/// `cgroup.kill` (Linux 5.14+) kills the whole subtree at once; without it, SIGKILL
/// each member until none is left (a process may fork while we read the list).
fn kill_tree(root: &Path) -> Result<(), String> {
    if !root.exists() {
        return Ok(());
    }
    let kill_file = root.join("cgroup.kill");
    let used_kill_file = kill_file.exists()
        && fs::OpenOptions::new()
            .write(true)
            .open(&kill_file)
            .and_then(|mut f| f.write_all(b"1"))
            .is_ok();
    let drained = wait_until(DRAIN_TIMEOUT, Duration::from_millis(10), || {
        if !is_populated(root) {
            return true;
        }
        if !used_kill_file {
            for cgroup in subtree_deepest_first(root) {
                for pid in read_pids(&cgroup) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        false
    });
    if drained {
        Ok(())
    } else {
        Err(format!(
            "processes still in {} after {DRAIN_TIMEOUT:?}",
            root.display()
        ))
    }
}

/// Kills every process below `root`, then removes the cgroups deepest first.
/// Used by Drop and by the sweep of leftovers.
pub fn kill_and_remove(root: &Path) -> Result<(), String> {
    if !root.exists() {
        return Ok(());
    }
    kill_tree(root)?;
    for cgroup in subtree_deepest_first(root) {
        rmdir_with_retry(&cgroup)?;
    }
    Ok(())
}

/// Removes the cgroups below `root` (inclusive), deepest first, without
/// killing: for v1 hierarchies, whose processes die through their cgroup2 twin.
pub fn remove_dirs_deepest_first(root: &Path) -> Result<(), String> {
    for cgroup in subtree_deepest_first(root) {
        rmdir_with_retry(&cgroup)?;
    }
    Ok(())
}

/// rmdir can report EBUSY for a moment after the last process left.
fn rmdir_with_retry(cgroup: &Path) -> Result<(), String> {
    let removed = poll(
        DRAIN_TIMEOUT,
        Duration::from_millis(20),
        || match fs::remove_dir(cgroup) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            removed => removed,
        },
    );
    removed.map_err(|err| format!("rmdir {}: {err}", cgroup.display()))
}

//! Release-once for a path a test creates (a netns, a cgroup, a bpffs mount, a temp
//! dir): released explicitly, where the test can see the error, or else on drop,
//! where the error can only be printed. A failed release leaves it held, so drop
//! tries again.

use std::path::{Path, PathBuf};

/// Removes what stands at a path: `Err` says why it could not.
pub type Release = fn(&Path) -> Result<(), String>;

/// Owns `path` until `release` succeeded once; the owners (`TempDir`,
/// `TestCgroup`, `BpffsMount`, `NamedNetns`) need no `Drop` of their own.
#[derive(Debug)]
pub struct HeldPath {
    path: PathBuf,
    /// What it is, for the message of a failed release on drop.
    what: &'static str,
    release: Release,
    held: bool,
}

impl HeldPath {
    pub fn new(what: &'static str, path: PathBuf, release: Release) -> Self {
        HeldPath {
            path,
            what,
            release,
            held: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Runs the release unless it already succeeded once.
    pub fn release(&mut self) -> Result<(), String> {
        if self.held {
            (self.release)(&self.path)?;
            self.held = false;
        }
        Ok(())
    }
}

impl Drop for HeldPath {
    /// Prints a failed release (a panic here would abort).
    fn drop(&mut self) {
        if let Err(err) = self.release() {
            eprintln!("[harness] {} cleanup: {err}", self.what);
        }
    }
}

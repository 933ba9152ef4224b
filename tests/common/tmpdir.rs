//! The per-node temp dir `/tmp/meshlane-test-<pid>-<n>/`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::held::HeldPath;
use super::mountinfo;
use super::names::{InstanceId, TMP_ROOT};
use super::sweep;

#[derive(Debug)]
pub struct TempDir {
    held: HeldPath,
}

impl TempDir {
    /// Creates the directory world-traversable (0755): UID 1337 and app users must
    /// reach the files the harness writes for them.
    pub fn create(path: PathBuf) -> io::Result<Self> {
        fs::create_dir(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(TempDir {
            held: HeldPath::new("temp dir", path, remove_unless_mounted),
        })
    }

    /// `/tmp/meshlane-test-<pid>-<n>/` for a test that needs files but no node;
    /// the first one of the process sweeps what crashed runs left.
    pub fn fresh() -> Self {
        sweep::sweep_leftovers_once();
        let path = Path::new(TMP_ROOT).join(InstanceId::next().dir_name());
        TempDir::create(path).unwrap_or_else(|err| panic!("create the test's temp dir: {err}"))
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        fs::write(&path, contents).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        path
    }

    pub fn path(&self) -> &Path {
        self.held.path()
    }

    /// Removes the tree; refuses while something is still mounted inside it, so a
    /// failed unmount never turns into deleting files of a live filesystem.
    pub fn remove(&mut self) -> Result<(), String> {
        self.held.release()
    }
}

pub fn remove_unless_mounted(path: &Path) -> Result<(), String> {
    let mounted = mountinfo::mounts_under(&format!("{}/", path.display()));
    if !mounted.is_empty() {
        return Err(format!(
            "not removing {}: still mounted inside: {mounted:?}",
            path.display()
        ));
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        // Gone is gone: a concurrent run's sweep may be removing the same tree.
        Err(_) if !path.exists() => Ok(()),
        Err(err) => Err(format!("remove {}: {err}", path.display())),
    }
}

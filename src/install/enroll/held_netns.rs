//! A running pod's network namespace, held open for the whole enrollment.
//!
//! `/proc/<pid>/ns/net` names whatever namespace the process with that PID is
//! in *now*: once the pod's processes exit, the path is gone, and once the
//! PID is reused it names another process's namespace (another pod's, or the
//! node's). Every step of an enrollment therefore goes through one descriptor
//! opened at the start, reached as `/proc/self/fd/<n>` by the code that takes a
//! path: what is inspected is what is written for.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct HeldNetns {
    file: File,
    /// Where it was opened, for messages.
    opened_at: PathBuf,
}

impl HeldNetns {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(HeldNetns {
            file: File::open(path)?,
            opened_at: path.to_owned(),
        })
    }

    /// A path to this very namespace while `self` lives (a new open of it
    /// reopens the descriptor's file, never a PID's current namespace).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// The namespace file's (device, inode): its identity.
    pub fn id(&self) -> io::Result<(u64, u64)> {
        let meta = self.file.metadata()?;
        Ok((meta.dev(), meta.ino()))
    }

    pub fn opened_at(&self) -> &Path {
        &self.opened_at
    }
}

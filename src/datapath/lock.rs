//! An exclusive lock on the pin root: kubelet runs CNI ADDs in parallel, and loading
//! or changing pod state must happen one process at a time. bpffs holds no regular
//! files, so the lock is a `flock` on the root directory itself.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::error::DatapathError;

pub struct RootLock {
    // Held for its lifetime: closing the file releases the flock.
    _dir: File,
}

impl RootLock {
    pub fn exclusive(root: &Path) -> Result<Self, DatapathError> {
        let lock_err = |source| DatapathError::Lock {
            path: root.to_path_buf(),
            source,
        };
        let dir = File::open(root).map_err(lock_err)?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(RootLock { _dir: dir });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(lock_err(err));
            }
        }
    }
}

//! A private bpffs instance per test. Unmounting it drops every pin in it, pinned BPF
//! links included, which detaches whatever meshlane attached through them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::held::HeldPath;

/// A bpffs (or tmpfs) mounted at a directory of the test's temp dir; unmounted
/// on drop.
#[derive(Debug)]
pub struct BpffsMount {
    held: HeldPath,
}

impl BpffsMount {
    /// Creates `path` and mounts a new bpffs instance on it (each bpf mount is a new
    /// superblock, so nothing is shared with /sys/fs/bpf or other tests).
    pub fn mount(path: PathBuf) -> io::Result<Self> {
        Self::mount_fs(path, "bpf", None)
    }

    /// The same guard over a tmpfs of `size_bytes` (a small disk to fill).
    pub fn tmpfs(path: PathBuf, size_bytes: u64) -> io::Result<Self> {
        Self::mount_fs(path, "tmpfs", Some(&format!("size={size_bytes},mode=0755")))
    }

    fn mount_fs(path: PathBuf, fstype: &str, data: Option<&str>) -> io::Result<Self> {
        fs::create_dir_all(&path)?;
        mount(
            Some(fstype),
            &path,
            Some(fstype),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data,
        )
        .map_err(io::Error::from)?;
        Ok(BpffsMount {
            held: HeldPath::new("bpffs", path, unmount),
        })
    }

    pub fn path(&self) -> &Path {
        self.held.path()
    }

    /// Idempotent.
    pub fn unmount(&mut self) -> Result<(), String> {
        self.held.release()
    }
}

/// Unmounts `path`; if something still holds it (an open pin, a cwd), detaches it
/// lazily so the tree disappears from the mount table now and the superblock with
/// its pins goes away once the holder lets go.
pub fn unmount(path: &Path) -> Result<(), String> {
    match umount2(path, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()), // not mounted
        Err(_) => umount2(path, MntFlags::MNT_DETACH)
            .map_err(|err| format!("umount {}: {err}", path.display())),
    }
}

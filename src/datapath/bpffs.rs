//! The pin root: created on a bpffs, readable by root only.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::error::DatapathError;
use super::layout::PinLayout;

/// True when `path` sits on a bpffs mount.
pub fn is_on_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
        .unwrap_or(false)
}

/// The nearest existing ancestor of `path` (the root itself when it exists).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// Checks that the pin root is (or will be) on a bpffs, without creating anything.
pub fn check_root(layout: &PinLayout) -> Result<(), DatapathError> {
    let root = layout.root();
    // The root itself when it exists (every call after the node's first): one
    // statfs, no stat of the path before it.
    let on_bpffs = match nix::sys::statfs::statfs(root) {
        Ok(fs) => fs.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC,
        Err(nix::errno::Errno::ENOENT) => existing_ancestor(root).is_some_and(is_on_bpffs),
        Err(_) => false,
    };
    if on_bpffs {
        Ok(())
    } else {
        Err(DatapathError::NotBpffs {
            path: root.to_path_buf(),
        })
    }
}

/// Creates the pin root and its subdirectories (mode 0700) on a bpffs.
pub fn prepare_root(layout: &PinLayout) -> Result<(), DatapathError> {
    check_root(layout)?;
    for dir in [
        layout.root().to_path_buf(),
        layout.maps_dir(),
        layout.links_dir(),
        layout.progs_dir(),
        layout.inbound_dir(),
    ] {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| DatapathError::PinDir { path: dir, source })?;
    }
    Ok(())
}

/// Opens the BPF object (a link, a program, a map) pinned at `path`. One system
/// call: callers that treat an absent pin as "not there" take the `NotFound`
/// error instead of asking `Path::exists` first (a `statx` per pin on every ADD),
/// and libbpf's own openers, which warn about an absent pin, are not involved.
pub fn open_pin(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;

    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "pin path contains NUL")
    })?;
    // SAFETY: a NUL-terminated path, alive for the call.
    let fd = unsafe { libbpf_rs::libbpf_sys::bpf_obj_get(path.as_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Pins a BPF object (a link, a program) by descriptor at `path`.
pub fn pin_fd(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;

    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "pin path contains NUL")
    })?;
    // SAFETY: a valid descriptor and a NUL-terminated path, both alive for the call.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), path.as_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

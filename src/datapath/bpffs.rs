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
    match existing_ancestor(root) {
        Some(existing) if is_on_bpffs(existing) => Ok(()),
        _ => Err(DatapathError::NotBpffs {
            path: root.to_path_buf(),
        }),
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

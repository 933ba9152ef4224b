//! The file edges of the installer: reading a net.d dir, atomic writes, and
//! installing the binary. Atomic means: a temp file in the same directory,
//! written and fsynced, then renamed over the target, then the directory
//! fsynced — a runtime never reads half a config, never runs half a binary.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::conflist::FileChange;
use super::error::InstallError;
use super::netdir::{self, NetDir};

/// Larger files are not CNI configs (containerd refuses configs over 1 MiB too).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The config candidates of a net.d dir (and nothing else: other files are
/// never read). A missing dir is empty: the primary CNI may create it later.
pub fn read_net_dir(dir: &Path) -> Result<NetDir, InstallError> {
    let mut files = NetDir::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(err) => return Err(InstallError::io("reading", dir)(err)),
    };
    for entry in entries {
        let entry = entry.map_err(InstallError::io("reading", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if netdir::kind_of(&name).is_none() {
            continue;
        }
        let path = entry.path();
        // Like libcni: directories are skipped, symlinks to files are followed.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mut contents = Vec::new();
        let read =
            File::open(&path).and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut contents));
        match read {
            Ok(_) => {
                files.insert(name, contents);
            }
            // Gone between listing and reading: a rename by the primary CNI.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(InstallError::io("reading", path)(err)),
        }
    }
    Ok(files)
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A leading dot and no config extension: runtimes never pick it up.
    target.with_file_name(format!(".{name}.meshlane-tmp-{}", std::process::id()))
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(InstallError::io("syncing", dir))
}

/// Writes `contents` to `target` atomically with the given mode.
pub fn write_atomic(target: &Path, contents: &[u8], mode: u32) -> Result<(), InstallError> {
    write_atomic_over(target, contents, mode, None)
}

/// The file's contents now (`None`: absent).
fn current(path: &Path) -> Result<Option<Vec<u8>>, InstallError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(InstallError::io("reading", path)(err)),
    }
}

/// Fails with `ChangedMeanwhile` unless `path` holds `expected` (`None`: absent).
fn unchanged(path: &Path, expected: Option<&[u8]>) -> Result<(), InstallError> {
    if current(path)?.as_deref() == expected {
        return Ok(());
    }
    Err(InstallError::ChangedMeanwhile {
        path: path.to_owned(),
    })
}

/// Like `write_atomic`; with `expected`, the target must still hold it (or,
/// for `Some(None)`, still be absent) right before the rename, else nothing
/// is replaced.
fn write_atomic_over(
    target: &Path,
    contents: &[u8],
    mode: u32,
    expected: Option<Option<&[u8]>>,
) -> Result<(), InstallError> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    let temp = temp_path(target);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)
            .map_err(InstallError::io("creating", &temp))?;
        file.write_all(contents)
            .map_err(InstallError::io("writing", &temp))?;
        // The mode given to open is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(InstallError::io("chmod", &temp))?;
        file.sync_all()
            .map_err(InstallError::io("syncing", &temp))?;
        if let Some(expected) = expected {
            // As late as possible: the primary CNI takes no lock, so this
            // narrows the window in which its rewrite would be lost.
            unchanged(target, expected)?;
        }
        fs::rename(&temp, target).map_err(InstallError::io("renaming into place", target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

/// Applies a conflist plan to `dir`, in order (a wrapped conflist is written
/// before its `.conf` is removed, so the dir always holds a valid config).
/// `read` is the dir the plan was made from: a file that no longer holds what
/// was read there was rewritten by the primary CNI meanwhile, and is left as
/// it is (`ChangedMeanwhile`: plan again) rather than replaced by an edit of
/// its old contents.
pub fn apply_changes(
    dir: &Path,
    changes: &[FileChange],
    read: &NetDir,
) -> Result<(), InstallError> {
    for change in changes {
        match change {
            FileChange::Write { file, contents } => {
                let expected = read.get(file).map(Vec::as_slice);
                write_atomic_over(&dir.join(file), contents, 0o644, Some(expected))?
            }
            FileChange::Remove { file } => {
                let path = dir.join(file);
                unchanged(&path, read.get(file).map(Vec::as_slice))?;
                match fs::remove_file(&path) {
                    Ok(()) => sync_dir(dir)?,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(InstallError::io("removing", path)(err)),
                }
            }
        }
    }
    Ok(())
}

/// Copies `source` (this very binary) to `<bin_dir>/meshlane` unless an
/// identical file is already there. Returns whether it copied.
pub fn install_binary(source: &Path, bin_dir: &Path) -> Result<bool, InstallError> {
    let target = bin_dir.join("meshlane");
    let wanted = fs::read(source).map_err(InstallError::io("reading", source))?;
    // A symlink there (a dev setup) is replaced by a real file: the runtime must
    // not depend on something outside the bin dir.
    let is_regular = fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_file());
    if is_regular && fs::read(&target).ok().as_deref() == Some(wanted.as_slice()) {
        let executable = fs::metadata(&target).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        if executable {
            return Ok(false);
        }
    }
    fs::create_dir_all(bin_dir).map_err(InstallError::io("creating", bin_dir))?;
    write_atomic(&target, &wanted, 0o755)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::scratch;

    #[test]
    fn reads_only_config_candidates() {
        let dir = scratch("read");
        fs::write(dir.join("10-a.conflist"), "{}").unwrap();
        fs::write(dir.join("calico-kubeconfig"), "secret").unwrap();
        fs::create_dir(dir.join("sub.conf")).unwrap();
        std::os::unix::fs::symlink(dir.join("10-a.conflist"), dir.join("20-link.conf")).unwrap();
        let files = read_net_dir(&dir).unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(names, ["10-a.conflist", "20-link.conf"]);
        assert!(read_net_dir(&dir.join("missing")).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_atomically_and_installs_once() {
        let dir = scratch("write");
        let target = dir.join("x.conflist");
        write_atomic(&target, b"one", 0o644).unwrap();
        write_atomic(&target, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");

        let source = dir.join("source-bin");
        fs::write(&source, b"\x7fELF...").unwrap();
        let bin = dir.join("bin");
        assert!(install_binary(&source, &bin).unwrap());
        assert!(
            !install_binary(&source, &bin).unwrap(),
            "identical: no copy"
        );
        let installed = bin.join("meshlane");
        assert_eq!(
            fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
            0o755
        );
        fs::write(&source, b"\x7fELF v2").unwrap();
        assert!(install_binary(&source, &bin).unwrap());
        assert_eq!(fs::read(&installed).unwrap(), b"\x7fELF v2");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The primary CNI rewrites its config after meshlane read it and before
    /// meshlane's edit lands: the edit (of the old contents) must not replace
    /// the rewrite. Before the check, the rewrite was lost.
    #[test]
    fn a_config_rewritten_after_the_read_is_not_replaced() {
        let dir = scratch("rewritten");
        let target = dir.join("10-a.conflist");
        fs::write(&target, "old").unwrap();
        let read = read_net_dir(&dir).unwrap();
        let edit = [FileChange::Write {
            file: "10-a.conflist".into(),
            contents: b"old + meshlane".to_vec(),
        }];
        fs::write(&target, "rewritten").unwrap();
        let err = apply_changes(&dir, &edit, &read).unwrap_err();
        assert!(
            matches!(err, InstallError::ChangedMeanwhile { .. }),
            "{err}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"rewritten");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");

        // A file that was absent when read and appeared since, and one that
        // is to be removed but was rewritten: both left alone too.
        let wrap = [
            FileChange::Write {
                file: "10-b.conflist".into(),
                contents: b"wrapped".to_vec(),
            },
            FileChange::Remove {
                file: "10-a.conflist".into(),
            },
        ];
        fs::write(dir.join("10-b.conflist"), "the primary's").unwrap();
        assert!(apply_changes(&dir, &wrap, &read).is_err());
        assert_eq!(
            fs::read(dir.join("10-b.conflist")).unwrap(),
            b"the primary's"
        );
        assert!(apply_changes(&dir, &wrap[1..], &read).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"rewritten");

        // Unchanged since the read: applied.
        let read = read_net_dir(&dir).unwrap();
        apply_changes(&dir, &edit, &read).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"old + meshlane");
        fs::remove_dir_all(&dir).unwrap();
    }
}

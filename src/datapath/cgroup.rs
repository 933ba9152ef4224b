//! The cgroup v2 directory the node-wide programs attach to.
//!
//! On hybrid hosts cgroup2 is mounted at `/sys/fs/cgroup/unified`, not
//! `/sys/fs/cgroup`: the mount is found in `/proc/self/mountinfo`, never assumed.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::DatapathError;

/// One mount of a mountinfo text: where, and which filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// Every mount listed in a mountinfo text, in its order.
pub fn parse_mountinfo(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> ..."
            let (left, right) = line.split_once(" - ")?;
            Some(Mount {
                mount_point: PathBuf::from(unescape_mountinfo(left.split_whitespace().nth(4)?)),
                fstype: right.split_whitespace().next()?.to_owned(),
            })
        })
        .collect()
}

/// The first cgroup2 mount point listed in a mountinfo text.
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .find(|mount| mount.fstype == "cgroup2")
        .map(|mount| mount.mount_point)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|octal| std::str::from_utf8(octal).ok())
            .and_then(|octal| u8::from_str_radix(octal, 8).ok());
        match escaped {
            Some(value) => {
                out.push(value);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where cgroup2 is mounted on nearly every host (unified, then hybrid layout),
/// in the order the mount table lists them there.
const USUAL_CGROUP2_MOUNTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// The host's cgroup2 root: a usual mount point whose filesystem is cgroup2
/// (one statfs each), else the first cgroup2 mount of this process's mount
/// table. The table is read only as the fallback: it grows by a line with each
/// pod's netns mount, and the CNI ADD of every pod would read it.
pub fn host_cgroup2_root() -> Result<PathBuf, DatapathError> {
    for candidate in USUAL_CGROUP2_MOUNTS {
        let is_cgroup2 = nix::sys::statfs::statfs(candidate)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        if is_cgroup2 {
            return Ok(PathBuf::from(candidate));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|_| DatapathError::NoCgroup2Mount)?;
    find_cgroup2_mount(&mountinfo).ok_or(DatapathError::NoCgroup2Mount)
}

/// An opened cgroup v2 directory and its id.
pub struct Cgroup {
    pub path: PathBuf,
    pub dir: File,
    /// The kernel's cgroup id (the directory's inode number on cgroup2).
    pub id: u64,
}

impl Cgroup {
    pub fn open(path: &Path) -> Result<Self, DatapathError> {
        let fs = nix::sys::statfs::statfs(path).map_err(|errno| DatapathError::Cgroup {
            path: path.to_path_buf(),
            source: errno.into(),
        })?;
        if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            return Err(DatapathError::NotCgroup2 {
                path: path.to_path_buf(),
            });
        }
        let dir = File::open(path).map_err(|source| DatapathError::Cgroup {
            path: path.to_path_buf(),
            source,
        })?;
        let id = dir
            .metadata()
            .map_err(|source| DatapathError::Cgroup {
                path: path.to_path_buf(),
                source,
            })?
            .ino();
        Ok(Cgroup {
            path: path.to_path_buf(),
            dir,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_unified_mount_on_hybrid_hosts() {
        assert_eq!(
            find_cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_a_pure_v2_mount_with_optional_fields() {
        let line =
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            find_cgroup2_mount(line),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    /// The statfs shortcut names the mount the mount table names first.
    #[test]
    fn the_usual_mount_is_the_one_the_mount_table_lists() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(
            host_cgroup2_root().ok(),
            find_cgroup2_mount(&mountinfo),
            "{mountinfo}"
        );
    }

    #[test]
    fn none_without_cgroup2() {
        let v1 = "40 31 0:37 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(find_cgroup2_mount(v1), None);
        assert_eq!(find_cgroup2_mount(""), None);
    }

    #[test]
    fn lists_every_mount_with_its_type() {
        let mounts = parse_mountinfo(HYBRID);
        let listed: Vec<(&str, &str)> = mounts
            .iter()
            .map(|m| (m.mount_point.to_str().unwrap(), m.fstype.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("/sys/fs/cgroup", "tmpfs"),
                ("/sys/fs/cgroup/systemd", "cgroup"),
                ("/sys/fs/cgroup/unified", "cgroup2"),
            ]
        );
    }

    #[test]
    fn unescapes_spaces_in_mount_points() {
        let line = "41 31 0:38 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(find_cgroup2_mount(line), Some(PathBuf::from("/mnt/cg two")));
    }
}

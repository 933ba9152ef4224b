//! The mount table of the test process, from /proc/self/mountinfo.

use std::fs;
use std::path::PathBuf;

/// One line of /proc/self/mountinfo, the fields the harness needs.
#[derive(Debug, Clone)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
}

pub fn mounts() -> Vec<Mount> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(parse_line).collect()
}

/// "<id> <parent> <maj:min> <root> <mount point> <options> [optional…] - <fstype> …"
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    Some(Mount {
        mount_point: PathBuf::from(unescape(before.split_whitespace().nth(4)?)),
        fstype: after.split_whitespace().next()?.to_string(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 mount point. Hybrid hosts mount it at `/sys/fs/cgroup/unified`, so it
/// is looked up, never hard-coded.
pub fn cgroup2_mount() -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.mount_point)
}

/// Every cgroup mount: the cgroup2 one, and on hybrid hosts each v1 hierarchy.
pub fn cgroup_mounts() -> Vec<Mount> {
    mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

/// Mount points whose path starts with `prefix` (a string prefix, so
/// `/tmp/meshlane-test-12-` matches every instance of PID 12), deepest first.
pub fn mounts_under(prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|point| point.to_string_lossy().starts_with(prefix))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

//! `meshlane precheck`: can this node run meshlane? Each check has a plain
//! verdict and, when it is not OK, what to do about it. FAIL means meshlane
//! cannot work here; WARN means it can, with a caveat worth reading.

use std::fmt;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libbpf_rs::libbpf_sys;
use libbpf_rs::query::ProgInfoIter;
use libbpf_rs::{Link, ProgramType};

use crate::datapath::bpffs::is_on_bpffs;
use crate::datapath::cgroup::Cgroup;
use crate::datapath::loader::NODE_PROGRAMS;
use crate::datapath::PinLayout;

/// The oldest kernel meshlane supports (netns cookies in every program type it
/// uses, cgroup and netns links, sk_lookup).
pub const MIN_KERNEL: (u32, u32) = (5, 15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

fn check(
    name: impl Into<String>,
    verdict: Verdict,
    detail: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check {
        name: name.into(),
        verdict,
        detail: detail.into(),
        fix: fix.map(str::to_owned),
    }
}

/// `6.18.44-fc-v595` → (6, 18).
pub fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn kernel_check(release: &str) -> Check {
    let release = release.trim();
    match parse_kernel_release(release) {
        Some(version) if version >= MIN_KERNEL => check("kernel", Verdict::Ok, release, None),
        Some(_) => check(
            "kernel",
            Verdict::Fail,
            format!("{release} is older than {}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
            Some("run nodes on Linux 5.15 or later (meshlane keys pods by netns cookie, which needs it)"),
        ),
        None => check(
            "kernel",
            Verdict::Warn,
            format!("cannot read the version from {release:?}"),
            Some("check that the kernel is 5.15 or later"),
        ),
    }
}

fn btf_check() -> Check {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    if path.exists() {
        check("BTF", Verdict::Ok, path.display().to_string(), None)
    } else {
        check(
            "BTF",
            Verdict::Fail,
            format!("{} is missing", path.display()),
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (meshlane's programs are CO-RE)"),
        )
    }
}

fn cgroup_check(cgroup: &Path) -> Check {
    match Cgroup::open(cgroup) {
        Ok(_) => check("cgroup v2", Verdict::Ok, cgroup.display().to_string(), None),
        Err(err) => check(
            "cgroup v2",
            Verdict::Fail,
            err.to_string(),
            Some("boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) or point --cgroup at the cgroup2 mount"),
        ),
    }
}

fn bpffs_check(pin_root: &Path) -> Check {
    let Some(existing) = pin_root.ancestors().find(|p| p.exists()) else {
        return check("bpffs", Verdict::Fail, "no existing parent", None);
    };
    if is_on_bpffs(existing) {
        check(
            "bpffs",
            Verdict::Ok,
            format!(
                "{} is on a bpffs (pins go to {})",
                existing.display(),
                pin_root.display()
            ),
            None,
        )
    } else {
        check(
            "bpffs",
            Verdict::Fail,
            format!("{} is not on a bpffs", existing.display()),
            Some("mount -t bpf bpf /sys/fs/bpf (in the DaemonSet: a hostPath /sys/fs/bpf with mountPropagation Bidirectional)"),
        )
    }
}

/// Program types meshlane loads, and what each is for.
const PROGRAM_TYPES: [(ProgramType, &str, &str); 5] = [
    (
        ProgramType::CgroupSockAddr,
        "cgroup_sock_addr",
        "outbound capture (connect4/6)",
    ),
    (
        ProgramType::CgroupSockopt,
        "cgroup_sockopt",
        "SO_ORIGINAL_DST answers",
    ),
    (
        ProgramType::SockOps,
        "sock_ops",
        "connection tracking, short path",
    ),
    (ProgramType::SkLookup, "sk_lookup", "inbound capture"),
    (
        ProgramType::SkMsg,
        "sk_msg",
        "the short path between local sockets",
    ),
];

/// Helpers meshlane calls, by the program type that calls them.
const HELPERS: [(ProgramType, &str, u32, &str); 7] = [
    (
        ProgramType::CgroupSockAddr,
        "get_netns_cookie",
        libbpf_sys::BPF_FUNC_get_netns_cookie,
        "finding the pod of a socket",
    ),
    (
        ProgramType::CgroupSockAddr,
        "sk_storage_get",
        libbpf_sys::BPF_FUNC_sk_storage_get,
        "remembering the original destination",
    ),
    (
        ProgramType::CgroupSockopt,
        "get_netns_cookie",
        libbpf_sys::BPF_FUNC_get_netns_cookie,
        "answering SO_ORIGINAL_DST",
    ),
    (
        ProgramType::SockOps,
        "get_netns_cookie",
        libbpf_sys::BPF_FUNC_get_netns_cookie,
        "keying loopback connections",
    ),
    (
        ProgramType::SockOps,
        "sock_hash_update",
        libbpf_sys::BPF_FUNC_sock_hash_update,
        "the short path and inbound listeners",
    ),
    (
        ProgramType::SkLookup,
        "sk_assign",
        libbpf_sys::BPF_FUNC_sk_assign,
        "steering inbound to the proxy",
    ),
    (
        ProgramType::SkMsg,
        "msg_redirect_hash",
        libbpf_sys::BPF_FUNC_msg_redirect_hash,
        "the short path",
    ),
];

fn probe_checks() -> Vec<Check> {
    let fix = "run a kernel of 5.15 or later with CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF and CONFIG_BPF_STREAM_PARSER, as root (or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN)";
    let mut checks = Vec::new();
    for (program_type, name, purpose) in PROGRAM_TYPES {
        let label = format!("program type {name}");
        checks.push(match program_type.is_supported() {
            Ok(true) => check(label, Verdict::Ok, purpose, None),
            Ok(false) => check(
                label,
                Verdict::Fail,
                format!("not supported; needed for {purpose}"),
                Some(fix),
            ),
            Err(err) => check(
                label,
                Verdict::Fail,
                format!("probe failed: {err}"),
                Some(fix),
            ),
        });
    }
    for (program_type, helper, id, purpose) in HELPERS {
        let type_name = PROGRAM_TYPES
            .iter()
            .find(|(t, _, _)| *t == program_type)
            .map_or("?", |(_, n, _)| n);
        let label = format!("helper {helper} in {type_name}");
        checks.push(match program_type.is_helper_supported(id) {
            Ok(true) => check(label, Verdict::Ok, purpose, None),
            Ok(false) => check(
                label,
                Verdict::Fail,
                format!("not available; needed for {purpose}"),
                Some(fix),
            ),
            Err(err) => check(
                label,
                Verdict::Fail,
                format!("probe failed: {err}"),
                Some(fix),
            ),
        });
    }
    checks
}

/// The cgroup hooks meshlane attaches to (now or with DNS capture).
const HOOKS: [(&str, u32); 10] = [
    ("connect4", libbpf_sys::BPF_CGROUP_INET4_CONNECT),
    ("connect6", libbpf_sys::BPF_CGROUP_INET6_CONNECT),
    ("getsockopt", libbpf_sys::BPF_CGROUP_GETSOCKOPT),
    ("sock_ops", libbpf_sys::BPF_CGROUP_SOCK_OPS),
    ("getpeername4", libbpf_sys::BPF_CGROUP_INET4_GETPEERNAME),
    ("getpeername6", libbpf_sys::BPF_CGROUP_INET6_GETPEERNAME),
    ("sendmsg4", libbpf_sys::BPF_CGROUP_UDP4_SENDMSG),
    ("sendmsg6", libbpf_sys::BPF_CGROUP_UDP6_SENDMSG),
    ("recvmsg4", libbpf_sys::BPF_CGROUP_UDP4_RECVMSG),
    ("recvmsg6", libbpf_sys::BPF_CGROUP_UDP6_RECVMSG),
];

/// The ids of the programs that run for sockets of `cgroup` on one hook
/// (attached there or inherited from a parent).
fn effective_programs(cgroup: &Cgroup, attach_type: u32) -> Result<Vec<u32>, std::io::Error> {
    let mut ids = [0u32; 64];
    let mut count = ids.len() as u32;
    let mut attach_flags = 0u32;
    // SAFETY: the pointers are to live locals; `count` tells the kernel how many
    // ids fit in `ids`, and it writes back how many it stored.
    let rc = unsafe {
        libbpf_sys::bpf_prog_query(
            cgroup.dir.as_raw_fd(),
            attach_type,
            libbpf_sys::BPF_F_QUERY_EFFECTIVE,
            &mut attach_flags,
            ids.as_mut_ptr(),
            &mut count,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    Ok(ids[..(count as usize).min(ids.len())].to_vec())
}

/// Names of loaded programs by id (for readable conflict reports).
fn program_names() -> Vec<(u32, String)> {
    ProgInfoIter::default()
        .map(|info| (info.id, info.name.to_string_lossy().into_owned()))
        .collect()
}

fn conflict_checks(cgroup_path: &Path, layout: &PinLayout) -> Vec<Check> {
    let Ok(cgroup) = Cgroup::open(cgroup_path) else {
        return Vec::new();
    };
    let ours: Vec<u32> = NODE_PROGRAMS
        .iter()
        .filter_map(|p| {
            let pin = layout.link(p.link);
            pin.exists()
                .then(|| Link::open(&pin).and_then(|l| l.info()).ok())
                .flatten()
        })
        .map(|info| info.prog_id)
        .collect();
    let names = program_names();
    let name_of = |id: u32| {
        names.iter().find(|(n, _)| *n == id).map_or_else(
            || format!("id {id}"),
            |(_, name)| format!("{name} (id {id})"),
        )
    };
    let mut checks = Vec::new();
    for (hook, attach_type) in HOOKS {
        let label = format!("other programs on {hook}");
        match effective_programs(&cgroup, attach_type) {
            Ok(ids) => {
                let others: Vec<String> = ids
                    .iter()
                    .filter(|id| !ours.contains(id))
                    .map(|id| name_of(*id))
                    .collect();
                if others.is_empty() {
                    checks.push(check(label, Verdict::Ok, "none", None));
                } else {
                    checks.push(check(
                        label,
                        Verdict::Warn,
                        format!("{} also run(s) for pods' sockets: {}", others.len(), others.join(", ")),
                        Some("another socket-level load balancer (e.g. Cilium's socket LB or kube-proxy replacement) rewrites the same connects; for Cilium set socketLB.hostNamespaceOnly=true so it leaves pod sockets to the sidecar"),
                    ));
                }
            }
            Err(err) => checks.push(check(
                label,
                Verdict::Warn,
                format!("cannot query: {err}"),
                None,
            )),
        }
    }
    checks
}

/// Every check, in the order an operator would fix them.
pub fn run_all(pin_root: &Path, cgroup: Result<PathBuf, String>) -> Vec<Check> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut checks = vec![kernel_check(&release), btf_check()];
    match &cgroup {
        Ok(path) => checks.push(cgroup_check(path)),
        Err(err) => checks.push(check(
            "cgroup v2",
            Verdict::Fail,
            err.clone(),
            Some("boot with cgroup v2 or pass --cgroup"),
        )),
    }
    checks.push(bpffs_check(pin_root));
    checks.extend(probe_checks());
    if let Ok(path) = &cgroup {
        checks.extend(conflict_checks(path, &PinLayout::new(pin_root)));
    }
    checks
}

/// The worst verdict (OK for none).
pub fn worst(checks: &[Check]) -> Verdict {
    checks
        .iter()
        .map(|c| c.verdict)
        .max()
        .unwrap_or(Verdict::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_kernel_release("5.15.0-91-generic\n"), Some((5, 15)));
        assert_eq!(parse_kernel_release("garbage"), None);
        assert_eq!(kernel_check("5.15.0").verdict, Verdict::Ok);
        assert_eq!(kernel_check("6.1.0-17-amd64").verdict, Verdict::Ok);
        assert_eq!(kernel_check("5.10.0-28-amd64").verdict, Verdict::Fail);
        assert_eq!(kernel_check("4.19.0").verdict, Verdict::Fail);
        assert_eq!(kernel_check("").verdict, Verdict::Warn);
        assert!(kernel_check("5.4.0").fix.is_some());
    }

    #[test]
    fn the_worst_verdict_decides() {
        let ok = check("a", Verdict::Ok, "", None);
        let warn = check("b", Verdict::Warn, "", None);
        let fail = check("c", Verdict::Fail, "", None);
        assert_eq!(worst(&[]), Verdict::Ok);
        assert_eq!(worst(&[ok.clone(), warn.clone()]), Verdict::Warn);
        assert_eq!(worst(&[warn, fail, ok]), Verdict::Fail);
    }
}

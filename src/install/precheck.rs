//! `meshlane precheck`: can this node run meshlane? Each check has a plain
//! verdict and, when it is not OK, what to do about it. FAIL means meshlane
//! cannot work here; WARN means it can, with a caveat worth reading.

use std::fmt;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libbpf_rs::libbpf_sys;
use libbpf_rs::query::ProgInfoIter;
use libbpf_rs::Link;

use crate::datapath::bpffs::is_on_bpffs;
use crate::datapath::cgroup::Cgroup;
use crate::datapath::features::{self, MissingFeature, Presence};
use crate::datapath::loader::NODE_PROGRAMS;
use crate::datapath::PinLayout;
use crate::policy::short_path_kernels::{kernel_series, node_short_path, ShortPathSwitch};

use super::cilium;
use super::conflist;
use super::error::ConflistError;
use super::netdir::{self, NetDir};

/// The oldest kernel meshlane supports (netns cookies in every program type it
/// uses, cgroup and netns links, sk_lookup).
pub const MIN_KERNEL: (u32, u32) = (5, 15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

pub fn check(
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

/// The oldest kernel series meshlane's test suites ran on (docs/kernels.md).
pub const OLDEST_TESTED: (u32, u32) = (6, 1);

pub fn kernel_check(release: &str) -> Check {
    let release = release.trim();
    match kernel_series(release) {
        Some(version) if version >= OLDEST_TESTED => {
            check("kernel", Verdict::Ok, release, None)
        }
        Some(version) if version >= MIN_KERNEL => check(
            "kernel",
            Verdict::Warn,
            format!(
                "{release} is untested: meshlane's test suites ran on {}.{} and later \
                 (docs/kernels.md); the checks below say whether it has what meshlane needs",
                OLDEST_TESTED.0, OLDEST_TESTED.1
            ),
            Some("run scripts/kernels.sh on this kernel, or use a tested one"),
        ),
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

/// What to do when the kernel lacks a program type, helper or attach mode.
const FEATURE_FIX: &str = "run a kernel of 5.15 or later with CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF and CONFIG_BPF_STREAM_PARSER, as root (or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN + CAP_PERFMON)";

/// One line per feature of `features::REQUIRED`; a missing one says exactly what
/// the plugin's ADD (code 103) and the agent's readiness say.
fn feature_checks(release: &str) -> Vec<Check> {
    let mut checks: Vec<Check> = features::REQUIRED
        .iter()
        .map(|feature| match features::probe(feature) {
            Presence::Present => check(feature.name, Verdict::Ok, feature.needed_for, None),
            Presence::Missing => check(
                feature.name,
                Verdict::Fail,
                MissingFeature::new(release, feature).to_string(),
                Some(FEATURE_FIX),
            ),
            Presence::Unknown(err) => check(
                feature.name,
                Verdict::Fail,
                format!("probe failed: {err}"),
                Some(FEATURE_FIX),
            ),
        })
        .collect();
    let link = &features::SK_MSG_LINK;
    checks.push(match features::probe(link) {
        Presence::Present => check(
            link.name,
            Verdict::Ok,
            "the short path's program is pinned as a link",
            None,
        ),
        Presence::Missing => check(
            link.name,
            Verdict::Ok,
            "not in this kernel (6.10+): the short path's program is attached to the map instead",
            None,
        ),
        Presence::Unknown(err) => check(
            link.name,
            Verdict::Warn,
            format!("probe failed: {err}; the program would be attached to the map"),
            None,
        ),
    });
    checks
}

/// The short path's default on this kernel (`shortPath` unset).
fn short_path_check(release: &str) -> Check {
    let default = node_short_path(ShortPathSwitch::ByKernel, release);
    if default.on {
        check(
            "short path default",
            Verdict::Ok,
            format!("on: {}", default.reason),
            None,
        )
    } else {
        check(
            "short path default",
            Verdict::Warn,
            format!("off: {}", default.reason),
            Some("leave it off (capture works without it), or set shortPath: true (MESHLANE_SHORT_PATH=true) after running the short-path suite on this kernel (scripts/kernels.sh)"),
        )
    }
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

/// Other programs on meshlane's hooks. Cilium's socket LB programs are OK
/// when its ConfigMap says they stay in the host namespace (`cilium.rs`).
fn conflict_checks(cgroup_path: &Path, layout: &PinLayout, cilium_host_only: bool) -> Conflicts {
    let mut conflicts = Conflicts::default();
    let Ok(cgroup) = Cgroup::open(cgroup_path) else {
        return conflicts;
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
    let name = |id: u32| {
        names
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, name)| name.clone())
    };
    let name_of =
        |id: u32| name(id).map_or_else(|| format!("id {id}"), |n| format!("{n} (id {id})"));
    let checks = &mut conflicts.checks;
    for (hook, attach_type) in HOOKS {
        let label = format!("other programs on {hook}");
        match effective_programs(&cgroup, attach_type) {
            Ok(ids) => {
                let other_ids: Vec<u32> = ids.into_iter().filter(|id| !ours.contains(id)).collect();
                let cilium = |id: &u32| name(*id).is_some_and(|n| cilium::is_socket_lb_program(&n));
                if other_ids.iter().any(cilium) {
                    conflicts.cilium_seen = true;
                }
                let others: Vec<String> = other_ids.iter().map(|id| name_of(*id)).collect();
                if others.is_empty() {
                    checks.push(check(label, Verdict::Ok, "none", None));
                } else if cilium_host_only && other_ids.iter().all(cilium) {
                    checks.push(check(
                        label,
                        Verdict::Ok,
                        format!(
                            "Cilium's socket LB ({}), which stays in the host namespace",
                            others.join(", ")
                        ),
                        None,
                    ));
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
    conflicts
}

/// The hooks' checks, and whether Cilium's socket LB programs are among the
/// other programs.
#[derive(Debug, Default)]
pub struct Conflicts {
    pub checks: Vec<Check>,
    pub cilium_seen: bool,
}

/// The primary CNI config: meshlane must not be chained after Istio's own
/// plugin (both would capture). `dir` is the conf dir as read, or why not.
pub fn chain_check(dir: Result<&NetDir, String>, configured: Option<&str>) -> Check {
    const NAME: &str = "CNI chain";
    match dir {
        Err(err) => check(
            NAME,
            Verdict::Warn,
            format!("cannot read the CNI config dir: {err}"),
            Some("pass --cni-conf-dir (the host's /etc/cni/net.d as mounted here)"),
        ),
        Ok(dir) => match conflist::istio_cni_primary(dir, configured) {
            Some(file) => check(
                NAME,
                Verdict::Fail,
                ConflistError::IstioCni { file }.to_string(),
                Some("uninstall Istio's CNI component first (README, \"Moving from istio-cni\")"),
            ),
            None => check(
                NAME,
                Verdict::Ok,
                "no istio-cni in the primary config",
                None,
            ),
        },
    }
}

/// Whether the primary config chains Cilium's CNI plugin.
pub fn cilium_in_chain(dir: &NetDir, configured: Option<&str>) -> bool {
    let Ok(choice) = netdir::choose_primary(dir, configured) else {
        return false;
    };
    choice.primary.is_some_and(|primary| {
        std::str::from_utf8(&dir[&primary.file])
            .is_ok_and(|text| text.contains(&format!("\"{}\"", cilium::CILIUM_CNI_TYPE)))
    })
}

/// Every check of the node, in the order an operator would fix them; the
/// hooks' last (`cilium_host_only`: Cilium's ConfigMap says its socket LB
/// leaves pods alone).
pub fn run_all(
    pin_root: &Path,
    cgroup: Result<PathBuf, String>,
    cilium_host_only: bool,
) -> (Vec<Check>, Conflicts) {
    let release = features::kernel_release();
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
    checks.extend(feature_checks(&release));
    checks.push(short_path_check(&release));
    let conflicts = match &cgroup {
        Ok(path) => conflict_checks(path, &PinLayout::new(pin_root), cilium_host_only),
        Err(_) => Conflicts::default(),
    };
    (checks, conflicts)
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
        // kernel_series itself is tested with the policy that owns it.
        assert_eq!(kernel_check("5.15.0-91-generic\n").verdict, Verdict::Warn);
        assert_eq!(kernel_check("5.15.0").verdict, Verdict::Warn);
        assert!(kernel_check("5.15.0").detail.contains("untested"));
        assert_eq!(kernel_check("6.1.0-17-amd64").verdict, Verdict::Ok);
        assert_eq!(
            kernel_check("6.12.118+deb12-cloud-amd64").verdict,
            Verdict::Ok
        );
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

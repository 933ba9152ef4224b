//! What meshlane needs from the kernel, probed on the kernel itself: every
//! program type it loads, every helper its programs call, and every way it
//! attaches them. The same table answers `meshlane precheck` (a line per
//! feature), the plugin's ADD (CNI error 103 before any program is loaded) and the
//! agent's readiness, with the same message, so that an old or trimmed kernel is
//! named for what it lacks instead of surfacing as a verifier dump at a pod's ADD.
//!
//! Probes load tiny programs and create throw-away maps of their own; nothing is
//! attached to a cgroup or a network namespace (see `feature_probe`).

use libbpf_rs::libbpf_sys;
use libbpf_rs::ProgramType;

use super::feature_probe;

/// How a feature is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The kernel loads programs of this type.
    ProgramType(ProgramType),
    /// Programs of this type may call this helper (`BPF_FUNC_*`).
    Helper(ProgramType, u32),
    /// `BPF_LINK_CREATE` on a cgroup for `connect4` (5.7+): the node programs'
    /// pinned links.
    CgroupLink,
    /// `BPF_LINK_CREATE` on a network namespace for `sk_lookup` (5.9+).
    NetnsLink,
    /// `BPF_PROG_ATTACH` of an `sk_msg` program to a sockhash (4.17+).
    SkMsgMapAttach,
    /// `BPF_LINK_CREATE` of an `sk_msg` program on a sockhash (6.10+).
    SkMsgLink,
}

/// One thing meshlane needs (or can do without) from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// What an operator reads: "program type sk_lookup", "helper sk_assign in
    /// sk_lookup", "attach mode sk_msg link".
    pub name: &'static str,
    /// What meshlane uses it for.
    pub needed_for: &'static str,
    pub probe: Probe,
}

const fn feature(name: &'static str, needed_for: &'static str, probe: Probe) -> Feature {
    Feature {
        name,
        needed_for,
        probe,
    }
}

use ProgramType::{CgroupSockAddr, CgroupSockopt, SkLookup, SkMsg, SockOps};

/// Everything meshlane cannot run without, in the order an operator would fix
/// them: program types, then the helpers each program calls, then attach modes.
pub const REQUIRED: [Feature; 24] = [
    feature(
        "program type cgroup_sock_addr",
        "outbound capture (connect4/6, sendmsg, recvmsg, getpeername)",
        Probe::ProgramType(CgroupSockAddr),
    ),
    feature(
        "program type cgroup_sockopt",
        "SO_ORIGINAL_DST answers",
        Probe::ProgramType(CgroupSockopt),
    ),
    feature(
        "program type sock_ops",
        "connection tracking and the short path's pairing",
        Probe::ProgramType(SockOps),
    ),
    feature(
        "program type sk_lookup",
        "inbound capture",
        Probe::ProgramType(SkLookup),
    ),
    feature(
        "program type sk_msg",
        "the short path between local sockets",
        Probe::ProgramType(SkMsg),
    ),
    feature(
        "helper get_netns_cookie in cgroup_sock_addr",
        "finding the pod of a socket",
        Probe::Helper(CgroupSockAddr, libbpf_sys::BPF_FUNC_get_netns_cookie),
    ),
    feature(
        "helper get_current_uid_gid in cgroup_sock_addr",
        "telling the proxy's traffic from the app's",
        Probe::Helper(CgroupSockAddr, libbpf_sys::BPF_FUNC_get_current_uid_gid),
    ),
    feature(
        "helper sk_storage_get in cgroup_sock_addr",
        "remembering the original destination",
        Probe::Helper(CgroupSockAddr, libbpf_sys::BPF_FUNC_sk_storage_get),
    ),
    feature(
        "helper sk_storage_delete in cgroup_sock_addr",
        "forgetting a destination a socket no longer has",
        Probe::Helper(CgroupSockAddr, libbpf_sys::BPF_FUNC_sk_storage_delete),
    ),
    feature(
        "helper get_netns_cookie in cgroup_sockopt",
        "answering SO_ORIGINAL_DST",
        Probe::Helper(CgroupSockopt, libbpf_sys::BPF_FUNC_get_netns_cookie),
    ),
    feature(
        "helper sk_storage_get in cgroup_sockopt",
        "answering SO_ORIGINAL_DST",
        Probe::Helper(CgroupSockopt, libbpf_sys::BPF_FUNC_sk_storage_get),
    ),
    feature(
        "helper get_netns_cookie in sock_ops",
        "keying loopback connections",
        Probe::Helper(SockOps, libbpf_sys::BPF_FUNC_get_netns_cookie),
    ),
    feature(
        "helper sk_storage_get in sock_ops",
        "handing the original destination to the proxy's socket",
        Probe::Helper(SockOps, libbpf_sys::BPF_FUNC_sk_storage_get),
    ),
    feature(
        "helper sock_hash_update in sock_ops",
        "the short path and the proxy's inbound listeners",
        Probe::Helper(SockOps, libbpf_sys::BPF_FUNC_sock_hash_update),
    ),
    feature(
        "helper skc_to_tcp_sock in sock_ops",
        "recognising the proxy's sockets",
        Probe::Helper(SockOps, libbpf_sys::BPF_FUNC_skc_to_tcp_sock),
    ),
    feature(
        "helper sk_assign in sk_lookup",
        "steering inbound to the proxy",
        Probe::Helper(SkLookup, libbpf_sys::BPF_FUNC_sk_assign),
    ),
    feature(
        "helper msg_redirect_hash in sk_msg",
        "the short path",
        Probe::Helper(SkMsg, libbpf_sys::BPF_FUNC_msg_redirect_hash),
    ),
    feature(
        "helper sk_storage_get in sk_msg",
        "the short path's per-socket state",
        Probe::Helper(SkMsg, libbpf_sys::BPF_FUNC_sk_storage_get),
    ),
    feature(
        "helper skc_to_tcp_sock in sk_msg",
        "the short path's backpressure and fallback to TCP",
        Probe::Helper(SkMsg, libbpf_sys::BPF_FUNC_skc_to_tcp_sock),
    ),
    feature(
        "helper probe_read_kernel in sk_msg",
        "reading how much the short path's reader holds",
        Probe::Helper(SkMsg, libbpf_sys::BPF_FUNC_probe_read_kernel),
    ),
    feature(
        "helper ktime_get_ns in sk_msg",
        "telling streamed small messages from request/response",
        Probe::Helper(SkMsg, libbpf_sys::BPF_FUNC_ktime_get_ns),
    ),
    feature(
        "attach mode cgroup link",
        "keeping the node programs attached after the loader exits",
        Probe::CgroupLink,
    ),
    feature(
        "attach mode netns link",
        "linking inbound steering (sk_lookup) to each pod",
        Probe::NetnsLink,
    ),
    feature(
        "attach mode sk_msg on a sockhash",
        "the short path (kernels without sk_msg links)",
        Probe::SkMsgMapAttach,
    ),
];

/// The `sk_msg` link (6.10+): with it the short path's program is pinned as a
/// link and replaced with `bpf_link_update`; without it meshlane attaches the
/// program to the map itself (`BPF_PROG_ATTACH`), which works as well.
pub const SK_MSG_LINK: Feature = feature(
    "attach mode sk_msg link",
    "pinning the short path's program as a link (6.10+); without it the program is attached to the map",
    Probe::SkMsgLink,
);

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present,
    Missing,
    /// The probe itself failed (no privileges, no bpf syscall): can't tell.
    Unknown(String),
}

/// A feature meshlane needs that this kernel does not have. Its message is what
/// precheck, the plugin (code 103) and the agent's readiness all say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "kernel {release} lacks {feature} (meshlane needs it for {needed_for}); \
     `meshlane precheck` lists what this kernel has"
)]
pub struct MissingFeature {
    pub release: String,
    pub feature: &'static str,
    pub needed_for: &'static str,
}

impl MissingFeature {
    pub fn new(release: &str, feature: &Feature) -> Self {
        MissingFeature {
            release: release.trim().to_owned(),
            feature: feature.name,
            needed_for: feature.needed_for,
        }
    }
}

/// Probes one feature.
pub fn probe(feature: &Feature) -> Presence {
    let answer = match feature.probe {
        Probe::ProgramType(program_type) => {
            program_type.is_supported().map_err(|err| err.to_string())
        }
        Probe::Helper(program_type, helper) => program_type
            .is_helper_supported(helper)
            .map_err(|err| err.to_string()),
        Probe::CgroupLink => feature_probe::cgroup_link(),
        Probe::NetnsLink => feature_probe::netns_link(),
        Probe::SkMsgMapAttach => feature_probe::sk_msg_map_attach(),
        Probe::SkMsgLink => feature_probe::sk_msg_link(),
    };
    match answer {
        Ok(true) => Presence::Present,
        Ok(false) => Presence::Missing,
        Err(err) => Presence::Unknown(err),
    }
}

/// The running kernel's release (`uname -r`): one `uname` call, where reading
/// `/proc/sys/kernel/osrelease` took five (every ADD asks).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|name| name.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unknown)".to_owned())
}

/// The first required feature this kernel lacks. A probe that cannot tell is not
/// a refusal: loading then says what went wrong, verifier log included.
pub fn first_missing(release: &str) -> Option<MissingFeature> {
    REQUIRED
        .iter()
        .find(|feature| probe(feature) == Presence::Missing)
        .map(|feature| MissingFeature::new(release, feature))
}

/// `Err` naming the first required feature the running kernel lacks.
pub fn require_all() -> Result<(), MissingFeature> {
    match first_missing(&kernel_release()) {
        Some(missing) => Err(missing),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_kernel_the_feature_and_its_use() {
        let missing = MissingFeature::new("5.10.0-28-amd64\n", &REQUIRED[3]);
        assert_eq!(
            missing.to_string(),
            "kernel 5.10.0-28-amd64 lacks program type sk_lookup (meshlane needs it for \
             inbound capture); `meshlane precheck` lists what this kernel has"
        );
    }

    #[test]
    fn every_feature_has_a_unique_name_and_a_use() {
        let mut names: Vec<&str> = REQUIRED.iter().map(|f| f.name).collect();
        names.push(SK_MSG_LINK.name);
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate feature names");
        for feature in REQUIRED.iter().chain([&SK_MSG_LINK]) {
            assert!(
                feature.name.starts_with("program type ")
                    || feature.name.starts_with("helper ")
                    || feature.name.starts_with("attach mode "),
                "{}",
                feature.name
            );
            assert!(!feature.needed_for.is_empty(), "{}", feature.name);
        }
    }

    #[test]
    fn helpers_are_probed_in_a_program_type_that_is_probed_too() {
        let types: Vec<ProgramType> = REQUIRED
            .iter()
            .filter_map(|f| match f.probe {
                Probe::ProgramType(t) => Some(t),
                _ => None,
            })
            .collect();
        for feature in &REQUIRED {
            if let Probe::Helper(program_type, _) = feature.probe {
                assert!(types.contains(&program_type), "{}", feature.name);
            }
        }
    }

    #[test]
    fn the_release_is_the_kernels_own() {
        let proc = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(kernel_release(), proc.trim());
    }
}

//! Errors of the datapath: loading, attaching, pinning and map access.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "{address} is already steered for {owner}, whose network namespace is alive: two \
         live pods cannot share an address meshlane steers (overlapping networks: leave \
         the overlapping interface out with traffic.sidecar.istio.io/excludeInterfaces, or \
         give the networks distinct ranges)"
    )]
    AddressInUse {
        address: std::net::IpAddr,
        owner: String,
    },

    #[error("{path} is not on a bpffs mount (mount one, e.g. `mount -t bpf bpf /sys/fs/bpf`)")]
    NotBpffs { path: PathBuf },

    #[error("{path} is not a cgroup v2 directory")]
    NotCgroup2 { path: PathBuf },

    #[error("no cgroup v2 mount found in /proc/self/mountinfo (meshlane needs cgroup v2)")]
    NoCgroup2Mount,

    #[error("preparing pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("locking pin root {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("loading BPF object {object}: {source} (the verifier log is in the details)")]
    Load {
        object: &'static str,
        source: libbpf_rs::Error,
        /// What libbpf and the verifier printed while loading.
        verifier_log: String,
    },

    #[error("attaching {program} to cgroup {cgroup}: {source}")]
    Attach {
        program: &'static str,
        cgroup: PathBuf,
        source: libbpf_rs::Error,
    },

    #[error("pinning {what} at {path}: {source}")]
    Pin {
        what: &'static str,
        path: PathBuf,
        source: libbpf_rs::Error,
    },

    #[error(
        "pin root {root} already serves cgroup id {attached} but the configuration names \
         {cgroup} (id {wanted}); give each cgroup its own bpffsRoot"
    )]
    CgroupMismatch {
        root: PathBuf,
        cgroup: PathBuf,
        attached: u64,
        wanted: u64,
    },

    #[error("opening pinned map {path}: {source} (are meshlane's programs loaded?)")]
    OpenMap {
        path: PathBuf,
        source: libbpf_rs::Error,
    },

    #[error("{operation} in map {map}: {source}")]
    MapAccess {
        operation: &'static str,
        map: &'static str,
        source: libbpf_rs::Error,
    },

    #[error("map {map} holds an entry of {found} bytes, expected {expected} (a map of another meshlane version?)")]
    MapLayout {
        map: &'static str,
        found: usize,
        expected: usize,
    },

    #[error("linking inbound steering (sk_lookup) to {netns}: {step}: {source}")]
    InboundLink {
        netns: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },

    #[error("attaching {program} to map {map}: {step}: {source}")]
    MapAttach {
        program: &'static str,
        map: &'static str,
        step: &'static str,
        source: std::io::Error,
    },

    #[error("BPF object {object} has no program {program} (a build of another version?)")]
    MissingProgram {
        object: &'static str,
        program: &'static str,
    },

    #[error("{what} does not fit the BPF record: {detail}")]
    DoesNotFit { what: &'static str, detail: String },

    #[error(
        "pinned map {map} at {path} does not match this build ({detail}): changing a map's \
         layout needs a planned migration (docs/upgrade.md); nothing was replaced and the \
         programs already attached keep running"
    )]
    MapIncompatible {
        map: String,
        path: PathBuf,
        detail: String,
    },

    #[error("{what} is not in place (nothing usable at {path}); attach the programs first")]
    NotAttached { what: String, path: PathBuf },

    /// The kernel lacks something meshlane needs (found by probing, before loading).
    #[error(transparent)]
    KernelFeature(#[from] super::features::MissingFeature),

    #[error("reading the kernel's information about {what}: {source}")]
    ProgramQuery {
        what: String,
        source: std::io::Error,
    },

    #[error("replacing the program of {target}: {step}: {source}; {rollback}")]
    Replace {
        target: String,
        step: &'static str,
        source: std::io::Error,
        /// What became of the programs replaced before this one.
        rollback: String,
    },
}

impl DatapathError {
    /// What libbpf and the verifier printed, for errors of loading.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            DatapathError::Load { verifier_log, .. } if !verifier_log.trim().is_empty() => {
                Some(verifier_log)
            }
            _ => None,
        }
    }
}

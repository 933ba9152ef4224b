//! What the tests expect of the running kernel, from its release alone: kept
//! apart from meshlane's own probes (src/datapath/features.rs) so that a test
//! checks them instead of repeating them.

/// `uname -r`.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("reading /proc/sys/kernel/osrelease")
        .trim()
        .to_owned()
}

/// (major, minor) of the running kernel.
pub fn series() -> (u32, u32) {
    let release = release();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => panic!("cannot read the kernel series from {release:?}"),
    }
}

/// Linux 6.10 added `BPF_LINK_CREATE` for `sk_msg` programs on a sockmap; older
/// kernels only attach them to the map (`BPF_PROG_ATTACH`).
pub fn has_sk_msg_links() -> bool {
    series() >= (6, 10)
}

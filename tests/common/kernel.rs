//! What the tests expect of the running kernel, from its release alone: kept
//! apart from meshlane's own probes (src/datapath/features.rs) so that a test
//! checks them instead of repeating them. The checks of a node against those
//! expectations that several test files make live here too.

use meshlane::datapath::loader::{map_program_attachment, MapAttachment, MAP_PROGRAMS};
use meshlane::datapath::{PinLayout, Target};

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

/// The short path's sk_msg hook as the upgrade report names it: its link where
/// the kernel has sk_msg links, else the program attached to `ml_short_tx`.
pub fn sk_msg_target() -> Target {
    if has_sk_msg_links() {
        Target::Link("sk_msg")
    } else {
        Target::MapAttached {
            pin: "sk_msg",
            map: "ml_short_tx",
        }
    }
}

/// Asserts the sk_msg program is attached the way this kernel allows: through a
/// link pinned under `<root>/links` (and no program pin) where it has sk_msg
/// links, else to the pinned `ml_short_tx` itself with the program pinned under
/// `<root>/progs`.
pub fn assert_sk_msg_attached_as_the_kernel_allows(layout: &PinLayout) {
    let attachment = map_program_attachment(layout, &MAP_PROGRAMS[0]);
    let linked = has_sk_msg_links();
    if linked {
        match attachment {
            Some(MapAttachment::Link { map_id, .. }) => assert!(map_id > 0),
            other => panic!("sk_msg is not attached through a link: {other:?}"),
        }
    } else {
        assert_eq!(
            attachment,
            Some(MapAttachment::Map),
            "kernel {} has no sk_msg links",
            release()
        );
    }
    assert_eq!(layout.link("sk_msg").exists(), linked);
    assert_eq!(layout.prog("sk_msg").exists(), !linked);
}

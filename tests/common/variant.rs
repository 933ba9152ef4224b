//! A "previous version" of meshlane's programs without a second build: the
//! short path's object loaded with another value of one of its `const volatile`
//! settings (`.rodata`), swapped into the node as an older meshlane with
//! another default would have attached it. An upgrade must then replace it.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapHandle, ProgramHandle};
use meshlane::datapath::relink;
use meshlane::datapath::skel::shortpath::ShortpathSkelBuilder;
use meshlane::datapath::PinLayout;

use super::kernel;

/// The variant's `ml_short_backlog_bytes` (the build's default differs).
pub const VARIANT_BACKLOG_BYTES: u32 = 1 << 20;

/// Loads the variant against the node's pinned maps and swaps it into the
/// `sk_msg` link (or, without sk_msg links, attaches it to the map and re-pins
/// the marker). Returns its program id.
pub fn attach_variant_sk_msg(layout: &PinLayout) -> u32 {
    let mut storage = MaybeUninit::uninit();
    let mut builder = ShortpathSkelBuilder::default();
    builder
        .object_builder_mut()
        .pin_root_path(layout.maps_dir())
        .expect("pin root path");
    let mut open = builder.open(&mut storage).expect("opening shortpath");
    open.maps
        .rodata_data
        .as_mut()
        .expect("shortpath has settings")
        .ml_short_backlog_bytes = VARIANT_BACKLOG_BYTES;
    let skel = open.load().expect("loading the variant");
    if !kernel::has_sk_msg_links() {
        let prog = skel.progs.ml_short_msg.as_fd();
        let map = MapHandle::from_pinned_path(layout.map("ml_short_tx")).expect("ml_short_tx");
        relink::reattach_to_map(prog, map.as_fd()).expect("attaching the variant to the map");
        relink::replace_pin(prog, &layout.prog("sk_msg")).expect("re-pinning the marker");
        return ProgramHandle::from_pinned_path(layout.prog("sk_msg"))
            .expect("the marker")
            .id();
    }
    let mut link = Link::open(layout.link("sk_msg")).expect("the sk_msg link");
    link.update_prog(&skel.progs.ml_short_msg)
        .expect("swapping the variant in");
    link.info().expect("link info").prog_id
}

/// The program the short path runs now (the link's, or the marker's).
pub fn sk_msg_program_id(layout: &PinLayout) -> u32 {
    if kernel::has_sk_msg_links() {
        Link::open(layout.link("sk_msg"))
            .expect("the sk_msg link")
            .info()
            .expect("link info")
            .prog_id
    } else {
        ProgramHandle::from_pinned_path(layout.prog("sk_msg"))
            .expect("the marker")
            .id()
    }
}

/// The program ids the kernel has attached to a sockhash for sk_msg
/// (`BPF_PROG_QUERY` on the map; with an sk_msg link it is the link's program).
pub fn programs_on_map(layout: &PinLayout, map: &str) -> Vec<u32> {
    let map = MapHandle::from_pinned_path(layout.map(map)).expect("pinned map");
    let mut ids = [0u32; 4];
    let mut count = ids.len() as u32;
    let mut flags = 0u32;
    // SAFETY: a live map descriptor and writable buffers of the sizes given.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_query(
            map.as_fd().as_raw_fd(),
            libbpf_rs::libbpf_sys::BPF_SK_MSG_VERDICT,
            0,
            &mut flags,
            ids.as_mut_ptr(),
            &mut count,
        )
    };
    assert_eq!(rc, 0, "BPF_PROG_QUERY on the sockhash");
    ids[..count as usize].to_vec()
}

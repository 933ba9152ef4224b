//! Detaching meshlane's pinned links before their pins go (`meshlane uninstall`).
//!
//! Removing a link's last pin does detach it, but not at once: the kernel drops
//! a pinned object's reference from deferred work after the unlink returns, so
//! for a moment after the pins are gone the programs still run on the cgroup.
//! An explicit `BPF_LINK_DETACH` is synchronous: when it returns, the program
//! is off its hook, and uninstall can say so.

use std::path::PathBuf;

use libbpf_rs::Link;

use super::inbound_link;
use super::layout::PinLayout;
use super::loader::{MAP_PROGRAMS, NODE_PROGRAMS};

/// Detaches every pinned node, map and per-pod inbound link under `layout`;
/// returns how many were detached. A pin that is absent, is not a link, or whose
/// link the kernel cannot detach (older kernels, for some link types) is left
/// to its unpin.
pub fn detach_pinned_links(layout: &PinLayout) -> usize {
    link_pins(layout)
        .filter(|pin| pin.exists())
        .filter(|pin| Link::open(pin).and_then(|link| link.detach()).is_ok())
        .count()
}

fn link_pins(layout: &PinLayout) -> impl Iterator<Item = PathBuf> + '_ {
    let node = NODE_PROGRAMS
        .iter()
        .map(|program| layout.link(program.link));
    let map = MAP_PROGRAMS.iter().map(|program| layout.link(program.pin));
    let inbound = inbound_link::linked_cookies(layout)
        .into_iter()
        .map(|cookie| layout.inbound_link(cookie));
    node.chain(map).chain(inbound)
}

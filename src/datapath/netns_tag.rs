//! Tells a pod's sk_lookup program which netns it runs in (struct ml_netns_tag in
//! `bpf/meshlane.h`). sk_lookup programs cannot read their netns cookie, and one
//! program serves every pod, so each captured netns gets a slot (0..4095, written
//! as two base-64 digits) and two links to tiny programs, one per digit value,
//! linked before the steering program: they write the digits, the steering program
//! reads them back and looks the slot up in `ml_netns_slots`.
//!
//! The 2 × 64 tag programs are loaded once per node (each is 13 instructions), so
//! an ADD only creates two links: no verifier run per pod.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libbpf_rs::libbpf_sys::{self, bpf_insn};

use super::abi::{ml_limits, ml_netns_tag};
use super::bpffs::{open_pin, pin_fd};
use super::error::DatapathError;
use super::layout::PinLayout;
use super::link_create::link_create;
use super::names::maps;
use super::pinned_map::PinnedMap;

/// Values of one digit; two digits name every slot.
pub const DIGITS: u32 = ml_limits::ML_NETNS_TAG_DIGITS.0;
const SLOTS: u32 = ml_limits::ML_MAX_PODS.0;
const _: () = assert!(DIGITS * DIGITS >= SLOTS);

/// Which of the two digits a tag program writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digit {
    Hi,
    Lo,
}

impl Digit {
    const BOTH: [Digit; 2] = [Digit::Hi, Digit::Lo];

    fn name(self) -> &'static str {
        match self {
            Digit::Hi => "hi",
            Digit::Lo => "lo",
        }
    }

    fn of_slot(self, slot: u32) -> u32 {
        match self {
            Digit::Hi => slot / DIGITS,
            Digit::Lo => slot % DIGITS,
        }
    }

    fn field_offset(self) -> i16 {
        let offset = match self {
            Digit::Hi => std::mem::offset_of!(ml_netns_tag, hi),
            Digit::Lo => std::mem::offset_of!(ml_netns_tag, lo),
        };
        offset as i16
    }
}

fn io_err(path: &Path, step: &'static str) -> impl FnOnce(std::io::Error) -> DatapathError {
    let netns = path.to_path_buf();
    move |source| DatapathError::InboundLink {
        netns,
        step,
        source,
    }
}

fn prog_pin(layout: &PinLayout, digit: Digit, value: u32) -> PathBuf {
    layout
        .tag_progs_dir()
        .join(format!("{}{value}", digit.name()))
}

/// A netns's tag links live in a directory of their own, so that finding them
/// never reads the other pods' pins.
fn links_of(layout: &PinLayout, netns_cookie: u64) -> PathBuf {
    layout.tag_links_dir().join(netns_cookie.to_string())
}

fn link_pin(layout: &PinLayout, netns_cookie: u64, slot: u32, digit: Digit) -> PathBuf {
    links_of(layout, netns_cookie).join(format!("{slot}-{}", digit.name()))
}

/// The slot of a netns, if it has a tag link.
pub fn slot_of(layout: &PinLayout, netns_cookie: u64) -> Option<u32> {
    match tag_links(layout, netns_cookie) {
        TagLinks::Dir(slot) => slot,
        TagLinks::NoDir => None,
    }
}

/// What a netns's tag-link directory holds, read once.
enum TagLinks {
    /// No directory: nothing was ever linked, or a detach finished.
    NoDir,
    /// The directory, and the slot its links name (`None`: no link in it).
    Dir(Option<u32>),
}

fn tag_links(layout: &PinLayout, netns_cookie: u64) -> TagLinks {
    match std::fs::read_dir(links_of(layout, netns_cookie)) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => TagLinks::NoDir,
        Err(_) => TagLinks::Dir(None),
        Ok(entries) => TagLinks::Dir(
            entries
                .filter_map(|entry| {
                    let name = entry.ok()?.file_name();
                    name.to_str()?.split('-').next()?.parse().ok()
                })
                .next(),
        ),
    }
}

/// How many entries of `ml_netns_slots` hold this netns (0 after `detach`).
pub fn slots_holding(layout: &PinLayout, netns_cookie: u64) -> Result<usize, DatapathError> {
    let slots = PinnedMap::open(layout, maps::NETNS_SLOTS)?;
    Ok(slots_of(&slots, netns_cookie)?.len())
}

/// Every slot naming this netns, by searching them all.
fn slots_of(slots: &PinnedMap, netns_cookie: u64) -> Result<Vec<u32>, DatapathError> {
    let mut held = Vec::new();
    for slot in 0..SLOTS {
        if slots.get::<u32, u64>(&slot)? == Some(netns_cookie) {
            held.push(slot);
        }
    }
    Ok(held)
}

/// Whether both tag links of the netns are pinned.
pub fn is_tagged(layout: &PinLayout, netns_cookie: u64) -> bool {
    slot_of(layout, netns_cookie).is_some_and(|slot| {
        Digit::BOTH
            .iter()
            .all(|digit| link_pin(layout, netns_cookie, slot, *digit).exists())
    })
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> bpf_insn {
    let mut insn = bpf_insn {
        code,
        off,
        imm,
        ..Default::default()
    };
    insn.set_dst_reg(dst);
    insn.set_src_reg(src);
    insn
}

/// The program that writes one digit: the tag's `hi` or `lo` (value + 1, so that
/// 0 means "not written") and the lookup's remote port, then lets the lookup go on.
fn tag_program(tag_map_fd: i32, digit: Digit, value: u32) -> Vec<bpf_insn> {
    // struct bpf_sk_lookup's remote_port, read as the steering program reads it.
    let remote_port = std::mem::offset_of!(libbpf_sys::bpf_sk_lookup, remote_port) as i16;
    let tag_port = std::mem::offset_of!(ml_netns_tag, remote_port) as i16;
    vec![
        insn(0xbf, 6, 1, 0, 0),                                            // r6 = ctx
        insn(0x62, 10, 0, -4, 0), // *(u32 *)(r10 - 4) = 0: the key
        insn(0xbf, 2, 10, 0, 0),  // r2 = r10
        insn(0x07, 2, 0, 0, -4),  // r2 += -4
        insn(0x18, 1, libbpf_sys::BPF_PSEUDO_MAP_FD as u8, 0, tag_map_fd), // r1 = &ml_netns_tag
        insn(0, 0, 0, 0, 0),
        insn(0x85, 0, 0, 0, libbpf_sys::BPF_FUNC_map_lookup_elem as i32),
        insn(0x15, 0, 0, 3, 0), // if r0 == 0 goto exit
        insn(0x6a, 0, 0, digit.field_offset(), value as i32 + 1), // *(u16 *)(r0 + digit) = value + 1
        insn(0x69, 1, 6, remote_port, 0), // r1 = *(u16 *)(ctx + remote_port)
        insn(0x63, 0, 1, tag_port, 0),    // *(u32 *)(r0 + remote_port) = r1
        insn(0xb7, 0, 0, 0, 1),           // r0 = SK_PASS
        insn(0x95, 0, 0, 0, 0),           // exit
    ]
}

fn load_tag_program(tag_map_fd: i32, digit: Digit, value: u32) -> std::io::Result<OwnedFd> {
    let insns = tag_program(tag_map_fd, digit, value);
    let name = CString::new(format!("ml_tag_{}{value}", digit.name())).unwrap_or_default();
    let license = c"Dual BSD/GPL";
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: libbpf_sys::BPF_SK_LOOKUP,
        ..Default::default()
    };
    // SAFETY: the instructions, names and options outlive the call.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_SK_LOOKUP,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh program descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn make_dir(path: PathBuf) -> Result<(), DatapathError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&path)
        .map_err(|source| DatapathError::PinDir { path, source })
}

/// Loads and pins the tag programs that are not pinned yet (all of them on the
/// node's first captured pod; none afterwards).
fn ensure_programs(layout: &PinLayout) -> Result<(), DatapathError> {
    let last = prog_pin(layout, Digit::Lo, DIGITS - 1);
    if last.exists() && prog_pin(layout, Digit::Hi, DIGITS - 1).exists() {
        return Ok(());
    }
    make_dir(layout.tag_progs_dir())?;
    let tag_map = layout.map(maps::NETNS_TAG);
    let map = open_pin(&tag_map).map_err(io_err(&tag_map, "opening the tag map"))?;
    for digit in Digit::BOTH {
        for value in 0..DIGITS {
            let path = prog_pin(layout, digit, value);
            if path.exists() {
                continue;
            }
            let prog = load_tag_program(map.as_raw_fd(), digit, value)
                .map_err(io_err(&path, "loading a tag program"))?;
            pin_fd(prog.as_fd(), &path).map_err(io_err(&path, "pinning a tag program"))?;
        }
    }
    Ok(())
}

/// Links a tag program to the netns and pins the link.
fn link(program: &Path, netns: &File, pin_path: &Path) -> std::io::Result<()> {
    let prog = open_pin(program)?;
    let link = link_create(prog.as_fd(), netns.as_fd(), libbpf_sys::BPF_SK_LOOKUP)?;
    pin_fd(link.as_fd(), pin_path)
}

/// Gives the netns a slot and links its tag programs (idempotent). Must run
/// before the steering program is linked: links run in the order they were made.
/// Returns whether any link was made. The caller holds the pin root's lock.
pub fn attach(
    layout: &PinLayout,
    netns_cookie: u64,
    netns: &File,
    netns_path: &Path,
) -> Result<bool, DatapathError> {
    ensure_programs(layout)?;
    let slots = PinnedMap::open(layout, maps::NETNS_SLOTS)?;
    let found = tag_links(layout, netns_cookie);
    // A directory made now holds no link yet: no pin to look for below.
    let fresh = matches!(found, TagLinks::NoDir);
    let slot = match found {
        TagLinks::Dir(Some(slot)) => slot,
        found => {
            // An attach killed before its first pin may have left a slot naming
            // this netns: released, so that the netns never holds two.
            detach_found(layout, netns_cookie, found)?;
            free_slot(layout, &slots, netns_cookie)?
        }
    };
    make_dir(links_of(layout, netns_cookie))?;
    slots.put(&slot, &netns_cookie)?;
    let mut linked = false;
    for digit in Digit::BOTH {
        let pin_path = link_pin(layout, netns_cookie, slot, digit);
        if !fresh && pin_path.exists() {
            continue;
        }
        let program = prog_pin(layout, digit, digit.of_slot(slot));
        if let Err(err) = link(&program, netns, &pin_path) {
            let _ = detach(layout, netns_cookie);
            return Err(io_err(netns_path, "linking a tag program")(err));
        }
        linked = true;
    }
    Ok(linked)
}

/// A free slot, searched from one the cookie picks: with at most 4096 pods in
/// 4096 slots, a few map lookups find one, however many pods the node has. A
/// slot still naming a netns without tag links (a DEL that stopped half-way) is
/// free too.
fn free_slot(
    layout: &PinLayout,
    slots: &PinnedMap,
    netns_cookie: u64,
) -> Result<u32, DatapathError> {
    let start = (netns_cookie % u64::from(SLOTS)) as u32;
    for step in 0..SLOTS {
        let slot = (start + step) % SLOTS;
        match slots.get::<u32, u64>(&slot)? {
            None | Some(0) => return Ok(slot),
            Some(holder) if !links_of(layout, holder).exists() => return Ok(slot),
            Some(_) => {}
        }
    }
    Err(DatapathError::DoesNotFit {
        what: "netns slots",
        detail: format!("all {SLOTS} are taken by captured pods"),
    })
}

/// Unlinks the netns's tag programs and frees its slot (idempotent).
pub fn detach(layout: &PinLayout, netns_cookie: u64) -> Result<(), DatapathError> {
    detach_found(layout, netns_cookie, tag_links(layout, netns_cookie))
}

/// `detach`, with the netns's tag-link directory already read.
fn detach_found(
    layout: &PinLayout,
    netns_cookie: u64,
    found: TagLinks,
) -> Result<(), DatapathError> {
    let dir = links_of(layout, netns_cookie);
    let slot = match found {
        // No directory: no link, and no slot write (that comes after the
        // directory is made).
        TagLinks::NoDir => return Ok(()),
        TagLinks::Dir(Some(slot)) => slot,
        TagLinks::Dir(None) => {
            // An attach or detach that stopped half-way (the plugin killed
            // between the slot's write and the first link's pin, or between the
            // last unpin and the slot's release): no link names the slot, so
            // the slots are searched for this netns.
            let slots = PinnedMap::open(layout, maps::NETNS_SLOTS)?;
            for slot in slots_of(&slots, netns_cookie)? {
                slots.put(&slot, &0u64)?;
            }
            return remove_dir(dir);
        }
    };
    for digit in Digit::BOTH {
        let path = link_pin(layout, netns_cookie, slot, digit);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DatapathError::PinDir { path, source }),
        }
    }
    let slots = PinnedMap::open(layout, maps::NETNS_SLOTS)?;
    if slots.get::<u32, u64>(&slot)? == Some(netns_cookie) {
        slots.put(&slot, &0u64)?;
    }
    remove_dir(dir)
}

fn remove_dir(path: PathBuf) -> Result<(), DatapathError> {
    match std::fs::remove_dir(&path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DatapathError::PinDir { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_digits_name_every_slot() {
        let slot = 4095;
        assert_eq!(
            Digit::Hi.of_slot(slot) * DIGITS + Digit::Lo.of_slot(slot),
            slot
        );
        assert_eq!(Digit::Hi.field_offset(), 0);
        assert_eq!(Digit::Lo.field_offset(), 2);
    }

    #[test]
    fn a_tag_program_writes_one_field_and_passes() {
        let insns = tag_program(3, Digit::Lo, 5);
        assert_eq!(insns[4].imm, 3, "the map descriptor");
        assert_eq!((insns[8].off, insns[8].imm), (2, 6), "lo = 5 + 1");
        assert_eq!(insns.last().map(|i| i.code), Some(0x95));
    }
}

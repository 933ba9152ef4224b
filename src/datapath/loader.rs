//! Loads, pins and attaches the node-wide programs — once per node, idempotently,
//! and safely when kubelet runs several CNI ADDs at the same time.
//!
//! Maps are pinned under `<root>/maps` (libbpf reuses them by name, so every
//! object shares one set); each cgroup program is attached through a link pinned
//! under `<root>/links`, which keeps it attached after the loading process exits.
//! The short path's `sk_msg` program is attached to a map instead (see
//! [`MAP_PROGRAMS`]).
//!
//! What is attached stays attached: programs of a later version replace these
//! in place through `upgrade`, never through here.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use libbpf_rs::query::{LinkInfo, LinkTypeInfo};
use libbpf_rs::{MapCore, MapHandle, ProgramMut};

use super::bpffs;
use super::cgroup::Cgroup;
use super::error::DatapathError;
use super::features;
use super::inventory::{CgroupLink, Inventory};
use super::layout::PinLayout;
use super::link_create::link_create;
use super::lock::RootLock;
use super::names::{maps, programs, Object};
use super::object_load;

/// A program attached to the node's cgroup, and the name of its link pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NodeProgram {
    /// The link's pin name under `<root>/links`.
    pub link: &'static str,
    /// The BPF object (`bpf/<object>.bpf.c`) it comes from.
    pub object: Object,
    /// The program's function name.
    pub program: &'static str,
}

/// Node program `program` of `object`, its link pinned as `link`.
const fn node(link: &'static str, object: Object, program: &'static str) -> NodeProgram {
    NodeProgram {
        link,
        object,
        program,
    }
}

pub const NODE_PROGRAMS: [NodeProgram; 10] = [
    node("connect4", Object::Connect, programs::CONNECT4),
    node("connect6", Object::Connect, programs::CONNECT6),
    node("sendmsg4", Object::Connect, programs::SENDMSG4),
    node("sendmsg6", Object::Connect, programs::SENDMSG6),
    node("recvmsg4", Object::Connect, programs::RECVMSG4),
    node("recvmsg6", Object::Connect, programs::RECVMSG6),
    node("getpeername4", Object::Connect, programs::GETPEERNAME4),
    node("getpeername6", Object::Connect, programs::GETPEERNAME6),
    node("getsockopt", Object::Origdst, programs::GETSOCKOPT),
    node("sockops", Object::Sockops, programs::SOCKOPS),
];

/// A program pinned for per-pod links (not attached to the node's cgroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PodProgram {
    /// The program's pin name under `<root>/progs`.
    pub pin: &'static str,
    pub object: Object,
    pub program: &'static str,
}

pub const POD_PROGRAMS: [PodProgram; 1] = [PodProgram {
    pin: "sk_lookup",
    object: Object::Inbound,
    program: programs::SK_LOOKUP,
}];

/// A program attached to one of meshlane's maps rather than to the cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MapProgram {
    /// Its link's pin name under `<root>/links` (kernels with `sk_msg` links, 6.10+),
    /// and the program's pin name under `<root>/progs` when the kernel has no such
    /// links and the program is attached to the map itself (`BPF_PROG_ATTACH`).
    pub pin: &'static str,
    pub object: Object,
    pub program: &'static str,
    /// The map it is attached to, pinned under `<root>/maps`.
    pub map: &'static str,
}

/// The short path's `sk_msg` program runs for every socket in `ml_short_tx`.
pub const MAP_PROGRAMS: [MapProgram; 1] = [MapProgram {
    pin: "sk_msg",
    object: Object::Shortpath,
    program: programs::SHORT_MSG,
    map: maps::SHORT_TX,
}];

/// How a map program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapAttach {
    /// A link where the kernel has them (6.10+ for `sk_msg`), else the map itself.
    Auto,
    /// Always `BPF_PROG_ATTACH` to the map: what kernels before 6.10 get. For tests
    /// of that path on newer kernels.
    ProgAttach,
}

/// How a map program is attached now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapAttachment {
    /// Through the link pinned at `<root>/links/<pin>`, to the pinned map.
    Link {
        link_id: u32,
        map_id: u32,
        prog_id: u32,
    },
    /// To the map itself (no link); `<root>/progs/<pin>` marks it.
    Map,
}

/// What `ensure_attached` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutcome {
    /// Every program was already attached (the common case: one stat per link).
    AlreadyAttached,
    /// These programs were loaded and attached now.
    Attached(Vec<&'static str>),
}

/// Makes sure every node-wide program is attached to `cgroup_path` with its link
/// pinned under `layout`. Cheap when they already are.
pub fn ensure_attached(
    layout: &PinLayout,
    cgroup_path: &Path,
) -> Result<AttachOutcome, DatapathError> {
    ensure_attached_with(layout, cgroup_path, MapAttach::Auto)
}

/// `ensure_attached`, choosing how map programs get attached.
pub fn ensure_attached_with(
    layout: &PinLayout,
    cgroup_path: &Path,
    map_attach: MapAttach,
) -> Result<AttachOutcome, DatapathError> {
    let cgroup = Cgroup::open(cgroup_path)?;
    bpffs::check_root(layout)?;
    if all_attached(layout, &cgroup)? {
        return Ok(AttachOutcome::AlreadyAttached);
    }
    bpffs::prepare_root(layout)?;
    let _lock = RootLock::exclusive(layout.root())?;
    // Another ADD may have attached everything while we waited for the lock.
    if all_attached(layout, &cgroup)? {
        return Ok(AttachOutcome::AlreadyAttached);
    }
    // A kernel without a program type, helper or attach mode meshlane needs is
    // named for it here, instead of failing in the verifier with a log to decode.
    features::require_all()?;
    let mut attached = Vec::new();
    for object in Object::LOAD_ORDER {
        attached.extend(load_and_attach(object, layout, &cgroup, map_attach)?);
    }
    Ok(AttachOutcome::Attached(attached))
}

/// True when everything is in place for this cgroup (see `Inventory`).
fn all_attached(layout: &PinLayout, cgroup: &Cgroup) -> Result<bool, DatapathError> {
    Inventory::probe(layout).complete_for(cgroup.id, &cgroup.path)
}

/// The cgroup id of a pinned cgroup link, `None` when there is no such pin.
pub fn pinned_link_cgroup(path: &Path) -> Option<u64> {
    CgroupLink::pinned_at(path).map(|link| link.cgroup_id)
}

/// How a map program is attached, `None` when it is not (or its link is pinned
/// for a map that is no longer the pinned one).
pub fn map_program_attachment(layout: &PinLayout, program: &MapProgram) -> Option<MapAttachment> {
    // Opened without a stat first: an absent pin is an open that fails with ENOENT.
    match bpffs::open_pin(&layout.link(program.pin)) {
        Ok(link) => link_attachment(layout, program, link.as_fd()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => layout
            .prog(program.pin)
            .exists()
            .then_some(MapAttachment::Map),
        Err(_) => None,
    }
}

/// How the link `link`, pinned for a map program, attaches it: `None` when it is
/// not a sockmap link or names a map that is no longer the pinned one.
fn link_attachment(
    layout: &PinLayout,
    program: &MapProgram,
    link: BorrowedFd<'_>,
) -> Option<MapAttachment> {
    let info = LinkInfo::from_fd(link).ok()?;
    let LinkTypeInfo::SockMap(sockmap) = info.info else {
        return None;
    };
    let map = MapHandle::from_pinned_path(layout.map(program.map)).ok()?;
    let map_id = map.info().ok()?.info.id;
    (sockmap.map_id == map_id).then_some(MapAttachment::Link {
        link_id: info.id,
        map_id,
        prog_id: info.prog_id,
    })
}

/// Loads one object with its maps pinned (or reused) under the root, then
/// attaches each of its programs that is not attached yet.
fn load_and_attach(
    object: Object,
    layout: &PinLayout,
    cgroup: &Cgroup,
    map_attach: MapAttach,
) -> Result<Vec<&'static str>, DatapathError> {
    object_load::with_loaded(object, layout, |loaded| {
        attach_from(object, loaded, layout, cgroup, map_attach)
    })
}

/// Attaches each program of a loaded object whose link or pin is missing.
fn attach_from(
    object: Object,
    loaded: &libbpf_rs::Object,
    layout: &PinLayout,
    cgroup: &Cgroup,
    map_attach: MapAttach,
) -> Result<Vec<&'static str>, DatapathError> {
    let mut attached = Vec::new();
    for program in NODE_PROGRAMS.iter().filter(|p| p.object == object) {
        let pin = layout.link(program.link);
        if pinned_link_cgroup(&pin).is_some() {
            continue;
        }
        let prog = program_of(loaded, object, program.program)?;
        let mut link = prog
            .attach_cgroup(cgroup.dir.as_fd().as_raw_fd())
            .map_err(|source| DatapathError::Attach {
                program: program.program,
                cgroup: cgroup.path.clone(),
                source,
            })?;
        link.pin(&pin).map_err(|source| DatapathError::Pin {
            what: program.link,
            path: pin.clone(),
            source,
        })?;
        attached.push(program.link);
    }
    for program in POD_PROGRAMS.iter().filter(|p| p.object == object) {
        let pin = layout.prog(program.pin);
        if pin.exists() {
            continue;
        }
        let mut prog = program_of(loaded, object, program.program)?;
        pin_program(&mut prog, program.pin, &pin)?;
        attached.push(program.pin);
    }
    for program in MAP_PROGRAMS.iter().filter(|p| p.object == object) {
        if map_program_attachment(layout, program).is_some() {
            continue;
        }
        // A link pinned for a map that is no longer the pinned one: replace it.
        let stale = layout.link(program.pin);
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(|source| DatapathError::PinDir {
                path: stale.clone(),
                source,
            })?;
        }
        let mut prog = program_of(loaded, object, program.program)?;
        let map = loaded.maps().find(|m| m.name() == program.map).ok_or(
            DatapathError::MissingProgram {
                object: object.name(),
                program: program.map,
            },
        )?;
        if attach_to_map(prog.as_fd(), map.as_fd(), layout, program, map_attach)? {
            attached.push(program.pin);
            continue;
        }
        // No link: the map holds the program; the pinned program marks it attached.
        let pin = layout.prog(program.pin);
        pin_program(&mut prog, program.pin, &pin)?;
        attached.push(program.pin);
    }
    Ok(attached)
}

/// The program `name` of a loaded `object`.
fn program_of<'o>(
    loaded: &'o libbpf_rs::Object,
    object: Object,
    name: &'static str,
) -> Result<ProgramMut<'o>, DatapathError> {
    loaded
        .progs_mut()
        .find(|p| p.name() == name)
        .ok_or(DatapathError::MissingProgram {
            object: object.name(),
            program: name,
        })
}

/// Pins a loaded program at `pin` (`what` names it in the error).
fn pin_program(
    prog: &mut ProgramMut<'_>,
    what: &'static str,
    pin: &Path,
) -> Result<(), DatapathError> {
    prog.pin(pin).map_err(|source| DatapathError::Pin {
        what,
        path: pin.to_owned(),
        source,
    })
}

/// Kernels before 6.10 refuse `BPF_LINK_CREATE` for `sk_msg` with one of these.
const NO_SK_MSG_LINKS: [i32; 3] = [libc::EINVAL, libc::EOPNOTSUPP, 524 /* ENOTSUPP */];

/// Attaches an `sk_msg` program to a sockhash: through a link pinned under
/// `<root>/links` (true) where the kernel has them, else to the map itself (false;
/// sockets already in the map keep the program they had, and replacing it needs
/// a new attach rather than `bpf_link_update`).
fn attach_to_map(
    prog: BorrowedFd<'_>,
    map: BorrowedFd<'_>,
    layout: &PinLayout,
    program: &MapProgram,
    how: MapAttach,
) -> Result<bool, DatapathError> {
    let attach_err = |step: &'static str| {
        move |source: std::io::Error| DatapathError::MapAttach {
            program: program.program,
            map: program.map,
            step,
            source,
        }
    };
    let attach_type = libbpf_rs::libbpf_sys::BPF_SK_MSG_VERDICT;
    if how == MapAttach::Auto {
        match link_create(prog, map, attach_type) {
            Ok(link) => {
                let pin = layout.link(program.pin);
                bpffs::pin_fd(link.as_fd(), &pin).map_err(attach_err("pinning the link"))?;
                return Ok(true);
            }
            Err(err) if NO_SK_MSG_LINKS.contains(&err.raw_os_error().unwrap_or(0)) => {}
            Err(err) => return Err(attach_err("creating the link")(err)),
        }
    }
    // SAFETY: both descriptors are open for the duration of the call.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_attach(prog.as_raw_fd(), map.as_raw_fd(), attach_type, 0)
    };
    if rc < 0 {
        return Err(attach_err("attaching to the map")(
            std::io::Error::from_raw_os_error(-rc),
        ));
    }
    Ok(false)
}

//! Loads, pins and attaches the node-wide programs — once per node, idempotently,
//! and safely when kubelet runs several CNI ADDs at the same time.
//!
//! Maps are pinned under `<root>/maps` (libbpf reuses them by name, so every
//! object shares one set); each cgroup program is attached through a link pinned
//! under `<root>/links`, which keeps it attached after the loading process exits.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};

use super::bpffs;
use super::cgroup::Cgroup;
use super::error::DatapathError;
use super::layout::PinLayout;
use super::lock::RootLock;
use super::skel;
use super::verifier_log;

/// A program attached to the node's cgroup, and the name of its link pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeProgram {
    /// The link's pin name under `<root>/links`.
    pub link: &'static str,
    /// The BPF object (`bpf/<object>.bpf.c`) it comes from.
    pub object: &'static str,
    /// The program's function name.
    pub program: &'static str,
}

pub const NODE_PROGRAMS: [NodeProgram; 10] = [
    NodeProgram {
        link: "connect4",
        object: "connect",
        program: "ml_connect4",
    },
    NodeProgram {
        link: "connect6",
        object: "connect",
        program: "ml_connect6",
    },
    NodeProgram {
        link: "sendmsg4",
        object: "connect",
        program: "ml_sendmsg4",
    },
    NodeProgram {
        link: "sendmsg6",
        object: "connect",
        program: "ml_sendmsg6",
    },
    NodeProgram {
        link: "recvmsg4",
        object: "connect",
        program: "ml_recvmsg4",
    },
    NodeProgram {
        link: "recvmsg6",
        object: "connect",
        program: "ml_recvmsg6",
    },
    NodeProgram {
        link: "getpeername4",
        object: "connect",
        program: "ml_getpeername4",
    },
    NodeProgram {
        link: "getpeername6",
        object: "connect",
        program: "ml_getpeername6",
    },
    NodeProgram {
        link: "getsockopt",
        object: "origdst",
        program: "ml_getsockopt",
    },
    NodeProgram {
        link: "sockops",
        object: "sockops",
        program: "ml_sockops",
    },
];

/// A program pinned for per-pod links (not attached to the node's cgroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodProgram {
    /// The program's pin name under `<root>/progs`.
    pub pin: &'static str,
    pub object: &'static str,
    pub program: &'static str,
}

pub const POD_PROGRAMS: [PodProgram; 1] = [PodProgram {
    pin: "sk_lookup",
    object: "inbound",
    program: "ml_sk_lookup",
}];

const OBJECTS: [&str; 4] = ["connect", "origdst", "sockops", "inbound"];

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
    let mut attached = Vec::new();
    for object in OBJECTS {
        attached.extend(load_and_attach(object, layout, &cgroup)?);
    }
    Ok(AttachOutcome::Attached(attached))
}

/// True when every node program has a pinned link on this cgroup and every pod
/// program is pinned. A link pinned for another cgroup is an error: one pin root
/// serves one cgroup.
fn all_attached(layout: &PinLayout, cgroup: &Cgroup) -> Result<bool, DatapathError> {
    if POD_PROGRAMS.iter().any(|p| !layout.prog(p.pin).exists()) {
        return Ok(false);
    }
    for program in NODE_PROGRAMS {
        match pinned_link_cgroup(&layout.link(program.link)) {
            None => return Ok(false),
            Some(id) if id != cgroup.id => {
                return Err(DatapathError::CgroupMismatch {
                    root: layout.root().to_path_buf(),
                    cgroup: cgroup.path.clone(),
                    attached: id,
                    wanted: cgroup.id,
                })
            }
            Some(_) => {}
        }
    }
    Ok(true)
}

/// The cgroup id of a pinned cgroup link, `None` when there is no such pin.
pub fn pinned_link_cgroup(path: &Path) -> Option<u64> {
    // Checked first so that libbpf does not warn about a pin that is simply absent.
    if !path.exists() {
        return None;
    }
    let link = Link::open(path).ok()?;
    match link.info().ok()?.info {
        LinkTypeInfo::Cgroup(info) => Some(info.cgroup_id),
        _ => None,
    }
}

fn load_and_attach(
    object: &'static str,
    layout: &PinLayout,
    cgroup: &Cgroup,
) -> Result<Vec<&'static str>, DatapathError> {
    let mut storage = MaybeUninit::uninit();
    match object {
        "connect" => attach_from(
            object,
            skel::connect::ConnectSkelBuilder::default(),
            &mut storage,
            layout,
            cgroup,
        ),
        "origdst" => attach_from(
            object,
            skel::origdst::OrigdstSkelBuilder::default(),
            &mut storage,
            layout,
            cgroup,
        ),
        "sockops" => attach_from(
            object,
            skel::sockops::SockopsSkelBuilder::default(),
            &mut storage,
            layout,
            cgroup,
        ),
        "inbound" => attach_from(
            object,
            skel::inbound::InboundSkelBuilder::default(),
            &mut storage,
            layout,
            cgroup,
        ),
        other => unreachable!("no BPF object named {other}"),
    }
}

/// Opens and loads one object with its maps pinned (or reused) under the root,
/// then attaches each of its node programs whose link is not pinned yet.
fn attach_from<'obj, B>(
    object: &'static str,
    mut builder: B,
    storage: &'obj mut MaybeUninit<OpenObject>,
    layout: &PinLayout,
    cgroup: &Cgroup,
) -> Result<Vec<&'static str>, DatapathError>
where
    B: SkelBuilder<'obj>,
    B::Output: OpenSkel<'obj>,
{
    let load_err = |source, verifier_log| DatapathError::Load {
        object,
        source,
        verifier_log,
    };
    builder
        .object_builder_mut()
        .pin_root_path(layout.maps_dir())
        .map_err(|source| load_err(source, String::new()))?;
    let (loaded, log) = verifier_log::capture_during(|| builder.open(storage)?.load());
    let skel = loaded.map_err(|source| load_err(source, log))?;

    let mut attached = Vec::new();
    for program in NODE_PROGRAMS.iter().filter(|p| p.object == object) {
        let pin = layout.link(program.link);
        if pinned_link_cgroup(&pin).is_some() {
            continue;
        }
        let prog = skel
            .object()
            .progs_mut()
            .find(|p| p.name() == program.program)
            .ok_or(DatapathError::MissingProgram {
                object,
                program: program.program,
            })?;
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
        let mut prog = skel
            .object()
            .progs_mut()
            .find(|p| p.name() == program.program)
            .ok_or(DatapathError::MissingProgram {
                object,
                program: program.program,
            })?;
        prog.pin(&pin).map_err(|source| DatapathError::Pin {
            what: program.pin,
            path: pin.clone(),
            source,
        })?;
        attached.push(program.pin);
    }
    Ok(attached)
}

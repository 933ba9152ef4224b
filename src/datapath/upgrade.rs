//! Replacing the programs a node runs with this build's, without a moment in
//! which a hook runs none.
//!
//! `ensure_attached` leaves pinned programs alone, so a new meshlane would keep
//! running the old programs forever. Here, under the pin root's lock, this
//! build's objects are loaded against the pinned maps and every hook whose
//! program differs is switched in place: `bpf_link_update` for the cgroup links,
//! the `sk_msg` link and each pod's `sk_lookup` link (the link keeps its id, its
//! hook and its pin); `BPF_PROG_ATTACH` again where `sk_msg` has no link; and an
//! atomic re-pin of `progs/sk_lookup`, which new pods link from.
//!
//! Kept: the maps (reused by pin, so pod records, recorded original
//! destinations and short-path sockets stay), and with them every live
//! connection. A socket already in the short-path sockhash keeps the `sk_msg`
//! program it got when it joined (the kernel copies the map's program into the
//! socket); sockets that join later get the new one.
//!
//! Hooks are switched one after the other, so for a moment old and new programs
//! run side by side on different hooks, sharing the maps: that is why a map may
//! only change compatibly (`map_compat`). If a switch fails, the ones already
//! made are switched back; if this build cannot reuse a pinned map, nothing is
//! switched at all.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::{Link, MapHandle, Program};

use super::bpffs;
use super::error::DatapathError;
use super::inbound_link;
use super::layout::PinLayout;
use super::loader::{
    map_program_attachment, MapAttachment, MapProgram, MAP_PROGRAMS, NODE_PROGRAMS, POD_PROGRAMS,
};
use super::lock::RootLock;
use super::names::Object;
use super::object_load;
use super::prog_identity::ProgramIdentity;
use super::relink;
use super::upgrade_report::{Outcome, ProgramUpgrade, Target, UpgradeReport};

/// Which programs to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeMode {
    /// Those that differ from this build (tag, type, name or settings): what the
    /// install agent does at start.
    WhatDiffers,
    /// Every one, identical or not. Not for production use: it exercises the
    /// switch itself (a test has only one build at hand), and lets an operator
    /// rule out a stale program by hand.
    ForceEvenIfIdentical,
}

/// How a hook holds its program.
enum Holder {
    /// A pinned link (cgroup, sk_msg on its map, a pod's sk_lookup).
    Link(Link),
    /// The map holds the program itself; a pinned program marks which.
    Map { map: MapHandle, marker: PathBuf },
    /// A pinned program.
    Pin(PathBuf),
}

/// A hook as found on the node.
struct Found {
    target: Target,
    program: &'static str,
    holder: Holder,
    link_id: Option<u32>,
    /// Keeps the running program loaded while we may need to switch back to it.
    old_fd: OwnedFd,
    old: ProgramIdentity,
    /// A pod's link whose network namespace is gone: nothing to switch.
    netns_gone: bool,
}

/// Loads this build's programs and switches every hook whose program differs
/// (or every hook, with `ForceEvenIfIdentical`). Everything must be attached
/// already (`ensure_attached`).
pub fn upgrade_programs(
    layout: &PinLayout,
    mode: UpgradeMode,
) -> Result<UpgradeReport, DatapathError> {
    bpffs::check_root(layout)?;
    if !layout.root().exists() {
        return Err(DatapathError::NotAttached {
            what: "the pin root".into(),
            path: layout.root().to_path_buf(),
        });
    }
    // Kubelet's ADDs link new pods from progs/sk_lookup under this lock: none can
    // link from the old program after its pods' links were switched.
    let _lock = RootLock::exclusive(layout.root())?;
    let found = find_hooks(layout)?;
    let fresh = load_this_build(layout)?;
    let mut report = UpgradeReport::default();
    let mut switched: Vec<(&Found, BorrowedFd<'_>)> = Vec::new();
    for hook in &found {
        let (new_fd, new) = &fresh[hook.program];
        let mut outcome = if hook.netns_gone {
            Outcome::NetnsGone
        } else if mode == UpgradeMode::ForceEvenIfIdentical || !hook.old.same_version(new) {
            Outcome::Replaced
        } else {
            Outcome::Current
        };
        if outcome == Outcome::Replaced {
            match switch(&hook.holder, new_fd.as_fd(), hook.old_fd.as_fd()) {
                Ok(()) => switched.push((hook, new_fd.as_fd())),
                // The pod's netns went away since we looked.
                Err((_, err))
                    if matches!(hook.target, Target::PodLink(_))
                        && err.raw_os_error() == Some(libc::ENOLINK) =>
                {
                    outcome = Outcome::NetnsGone
                }
                Err((step, source)) => {
                    return Err(DatapathError::Replace {
                        target: hook.target.to_string(),
                        step,
                        source,
                        rollback: switch_back(&switched),
                    })
                }
            }
        }
        let after = if outcome == Outcome::Replaced {
            new
        } else {
            &hook.old
        };
        report.programs.push(ProgramUpgrade {
            target: hook.target.clone(),
            program: hook.program,
            link_id: hook.link_id,
            old_id: hook.old.id,
            old_tag: hook.old.tag,
            new_id: after.id,
            new_tag: after.tag,
            outcome,
        });
    }
    Ok(report)
}

/// Every hook meshlane has under the root, in the order they are switched: the
/// sk_msg program first (sockets that join the sockhash after sockops is switched
/// then get the new one), the cgroup programs, the pod program's pin, each pod's
/// link.
fn find_hooks(layout: &PinLayout) -> Result<Vec<Found>, DatapathError> {
    let mut found = Vec::new();
    for program in MAP_PROGRAMS {
        found.push(find_map_program(layout, &program)?);
    }
    for program in NODE_PROGRAMS {
        let target = Target::Link(program.link);
        found.push(found_link(
            target,
            program.program,
            &layout.link(program.link),
        )?);
    }
    for program in POD_PROGRAMS {
        let pin = layout.prog(program.pin);
        let (old_fd, old) = open_pinned_program(&Target::PodProgramPin(program.pin), &pin)?;
        found.push(Found {
            target: Target::PodProgramPin(program.pin),
            program: program.program,
            holder: Holder::Pin(pin),
            link_id: None,
            old_fd,
            old,
            netns_gone: false,
        });
    }
    let pod_program = POD_PROGRAMS[0].program;
    let mut cookies = inbound_link::linked_cookies(layout);
    cookies.sort_unstable();
    for cookie in cookies {
        let path = layout.inbound_link(cookie);
        found.push(found_link(Target::PodLink(cookie), pod_program, &path)?);
    }
    Ok(found)
}

fn find_map_program(layout: &PinLayout, program: &MapProgram) -> Result<Found, DatapathError> {
    match map_program_attachment(layout, program) {
        Some(MapAttachment::Link { .. }) => found_link(
            Target::Link(program.pin),
            program.program,
            &layout.link(program.pin),
        ),
        Some(MapAttachment::Map) => {
            let target = Target::MapAttached {
                pin: program.pin,
                map: program.map,
            };
            let marker = layout.prog(program.pin);
            let (old_fd, old) = open_pinned_program(&target, &marker)?;
            let map_path = layout.map(program.map);
            let map = MapHandle::from_pinned_path(&map_path).map_err(|source| {
                DatapathError::OpenMap {
                    path: map_path,
                    source,
                }
            })?;
            Ok(Found {
                target,
                program: program.program,
                holder: Holder::Map { map, marker },
                link_id: None,
                old_fd,
                old,
                netns_gone: false,
            })
        }
        None => Err(DatapathError::NotAttached {
            what: format!("{} on map {}", program.program, program.map),
            path: layout.link(program.pin),
        }),
    }
}

fn query_err(what: String) -> impl FnOnce(std::io::Error) -> DatapathError {
    move |source| DatapathError::ProgramQuery { what, source }
}

fn found_link(target: Target, program: &'static str, path: &Path) -> Result<Found, DatapathError> {
    // Checked first so that libbpf does not warn about a pin that is simply absent.
    if !path.exists() {
        return Err(DatapathError::NotAttached {
            what: target.to_string(),
            path: path.to_path_buf(),
        });
    }
    let what = || target.to_string();
    let link = Link::open(path).map_err(|err| query_err(what())(std::io::Error::other(err)))?;
    let info = link
        .info()
        .map_err(|err| query_err(what())(std::io::Error::other(err)))?;
    let (old_fd, old) = ProgramIdentity::of_id(info.prog_id).map_err(query_err(what()))?;
    // The kernel detaches a netns link when its netns goes, and then reports no
    // netns (inode 0); updating it would fail with ENOLINK.
    let netns_gone = matches!(info.info, LinkTypeInfo::NetNs(ref netns) if netns.ino == 0);
    Ok(Found {
        program,
        holder: Holder::Link(link),
        link_id: Some(info.id),
        old_fd,
        old,
        netns_gone,
        target,
    })
}

fn open_pinned_program(
    target: &Target,
    path: &Path,
) -> Result<(OwnedFd, ProgramIdentity), DatapathError> {
    if !path.exists() {
        return Err(DatapathError::NotAttached {
            what: target.to_string(),
            path: path.to_path_buf(),
        });
    }
    let fd = Program::fd_from_pinned_path(path)
        .map_err(|err| query_err(target.to_string())(std::io::Error::other(err)))?;
    let identity = ProgramIdentity::of_fd(fd.as_fd()).map_err(query_err(target.to_string()))?;
    Ok((fd, identity))
}

/// This build's programs, loaded against the pinned maps, by function name.
fn load_this_build(
    layout: &PinLayout,
) -> Result<HashMap<&'static str, (OwnedFd, ProgramIdentity)>, DatapathError> {
    let mut wanted: Vec<(Object, &'static str)> = Vec::new();
    wanted.extend(NODE_PROGRAMS.iter().map(|p| (p.object, p.program)));
    wanted.extend(POD_PROGRAMS.iter().map(|p| (p.object, p.program)));
    wanted.extend(MAP_PROGRAMS.iter().map(|p| (p.object, p.program)));
    let mut loaded = HashMap::new();
    for object in Object::LOAD_ORDER {
        object_load::with_loaded(object, layout, |built| {
            for &(_, name) in wanted.iter().filter(|(o, _)| *o == object) {
                let prog = built.progs().find(|p| p.name() == name).ok_or(
                    DatapathError::MissingProgram {
                        object: object.name(),
                        program: name,
                    },
                )?;
                let what = || format!("{name} of this build");
                // Our own descriptor keeps the program loaded once the object closes.
                let fd = prog
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(query_err(what()))?;
                let identity = ProgramIdentity::of_fd(fd.as_fd()).map_err(query_err(what()))?;
                loaded.insert(name, (fd, identity));
            }
            Ok(())
        })?;
    }
    Ok(loaded)
}

/// Makes the hook run `new` instead of `old`.
fn switch(
    holder: &Holder,
    new: BorrowedFd<'_>,
    old: BorrowedFd<'_>,
) -> Result<(), (&'static str, std::io::Error)> {
    match holder {
        Holder::Link(link) => {
            relink::update_link(link.as_fd(), new, old).map_err(|err| ("bpf_link_update", err))
        }
        Holder::Map { map, marker } => {
            relink::reattach_to_map(new, map.as_fd())
                .map_err(|err| ("BPF_PROG_ATTACH to the map", err))?;
            relink::replace_pin(new, marker).map_err(|err| {
                // The marker must name what the map runs: put the old one back.
                let _ = relink::reattach_to_map(old, map.as_fd());
                ("re-pinning the marker of the map's program", err)
            })
        }
        Holder::Pin(path) => relink::replace_pin(new, path).map_err(|err| ("re-pinning", err)),
    }
}

/// Switches the hooks switched so far back to their old programs, last first;
/// says how that went.
fn switch_back(switched: &[(&Found, BorrowedFd<'_>)]) -> String {
    if switched.is_empty() {
        return "nothing had been replaced before it".to_owned();
    }
    let failures: Vec<String> = switched
        .iter()
        .rev()
        .filter_map(|(hook, new)| {
            switch(&hook.holder, hook.old_fd.as_fd(), *new)
                .err()
                .map(|(step, err)| format!("{}: {step}: {err}", hook.target))
        })
        .collect();
    if failures.is_empty() {
        format!(
            "the {} program(s) replaced before it were put back",
            switched.len()
        )
    } else {
        format!(
            "putting back the programs replaced before it failed for {}",
            failures.join("; ")
        )
    }
}

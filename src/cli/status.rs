//! `meshlane status`: the version, every program meshlane runs (program id,
//! tag, link) — the node programs, the short path's, the per-pod program and
//! what the pods' links run —, the number of captured pods and the counters.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use libbpf_rs::query::{LinkTypeInfo, ProgInfoIter, ProgramInfo};
use libbpf_rs::{Link, ProgramHandle};

use crate::datapath::counters::read_counters;
use crate::datapath::inbound_link;
use crate::datapath::loader::{
    map_program_attachment, MapAttachment, MAP_PROGRAMS, NODE_PROGRAMS, POD_PROGRAMS,
};
use crate::datapath::PodMaps;

use super::args::Args;

/// `a1b2c3d4e5f60718`: the kernel's tag of a program (a hash of its
/// instructions), which tells two builds apart.
fn tag(info: &ProgramInfo) -> String {
    info.tag.0.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(args: &mut Args) -> Result<i32> {
    let layout = args.layout()?;
    args.finish()?;
    println!("meshlane  {}", env!("CARGO_PKG_VERSION"));
    println!("pin root  {}", layout.root().display());
    if !layout.maps_dir().exists() {
        println!(
            "nothing loaded (no maps under {})",
            layout.maps_dir().display()
        );
        return Ok(1);
    }
    // Program details by id (one pass over the loaded programs).
    let programs: Vec<ProgramInfo> = ProgInfoIter::default().collect();
    let describe = |id: u32| {
        programs
            .iter()
            .find(|p| p.id == id)
            .map(|p| format!("{} tag {}", p.name.to_string_lossy(), tag(p)))
            .unwrap_or_default()
    };

    let mut attached = 0;
    println!("\nnode programs");
    for program in NODE_PROGRAMS {
        let pin = layout.link(program.link);
        match Link::open(&pin).and_then(|link| link.info()) {
            Ok(info) => {
                attached += 1;
                let cgroup = match info.info {
                    LinkTypeInfo::Cgroup(cgroup) => format!("cgroup id {}", cgroup.cgroup_id),
                    _ => "not a cgroup link".to_owned(),
                };
                println!(
                    "  {:<12} attached  prog id {:<6} link id {:<6} {cgroup}  {}",
                    program.link,
                    info.prog_id,
                    info.id,
                    describe(info.prog_id)
                );
            }
            Err(_) => println!(
                "  {:<12} MISSING   (no link at {})",
                program.link,
                pin.display()
            ),
        }
    }
    println!("\nshort path programs");
    for program in MAP_PROGRAMS {
        // (program id, how it is attached)
        let found = match map_program_attachment(&layout, &program) {
            Some(MapAttachment::Link { link_id, .. }) => Link::open(layout.link(program.pin))
                .and_then(|link| link.info())
                .map(|info| (info.prog_id, format!("link id {link_id:<6}"))),
            Some(MapAttachment::Map) => ProgramHandle::from_pinned_path(layout.prog(program.pin))
                .map(|prog| (prog.id(), "no link (on the map)".to_owned())),
            None => {
                println!(
                    "  {:<12} MISSING   (not attached to {})",
                    program.pin, program.map
                );
                continue;
            }
        };
        match found {
            Ok((prog_id, how)) => println!(
                "  {:<12} attached  prog id {prog_id:<6} {how} map {}  {}",
                program.pin,
                program.map,
                describe(prog_id)
            ),
            Err(err) => println!("  {:<12} UNREADABLE ({err})", program.pin),
        }
    }
    println!("\nper-pod programs");
    for program in POD_PROGRAMS {
        let pin = layout.prog(program.pin);
        match ProgramHandle::from_pinned_path(&pin) {
            Ok(prog) => println!(
                "  {:<12} pinned    prog id {:<6} {}",
                program.pin,
                prog.id(),
                describe(prog.id())
            ),
            Err(_) => println!(
                "  {:<12} MISSING   (no program at {})",
                program.pin,
                pin.display()
            ),
        }
    }
    // Which programs the pods' links run: after an upgrade, all the pinned one.
    let mut by_program: BTreeMap<u32, usize> = BTreeMap::new();
    for cookie in inbound_link::linked_cookies(&layout) {
        let prog_id = Link::open(layout.inbound_link(cookie))
            .and_then(|link| link.info())
            .map(|info| info.prog_id)
            .unwrap_or(0);
        *by_program.entry(prog_id).or_default() += 1;
    }
    for (prog_id, links) in &by_program {
        println!(
            "  {:<12} {links} pod link(s) run prog id {prog_id}  {}",
            "inbound",
            describe(*prog_id)
        );
    }
    match PodMaps::open(&layout).and_then(|maps| maps.pods()) {
        Ok(pods) => println!("\ncaptured pods  {} (meshlane pods lists them)", pods.len()),
        Err(err) => println!("\ncaptured pods  unknown ({err})"),
    }
    println!("\ncounters");
    for (name, value) in read_counters(&layout).context("reading the counters")? {
        println!("  {name:<28} {value}");
    }
    Ok(if attached == NODE_PROGRAMS.len() {
        0
    } else {
        1
    })
}

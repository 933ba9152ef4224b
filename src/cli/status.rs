//! `meshlane status`: the version, every program meshlane runs (program id,
//! tag, link) — the node programs, the short path's, the per-pod program and
//! what the pods' links run —, the number of captured pods and the counters.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use libbpf_rs::query::{ProgInfoIter, ProgramInfo};
use serde_json::json;

use crate::datapath::counters::read_counters;
use crate::datapath::inventory::Inventory;
use crate::datapath::loader::MapAttachment;
use crate::datapath::{PinLayout, PodMaps};

use super::output::{print_json, Output};

pub use super::output::ReadPinsArgs as Args;

/// `a1b2c3d4e5f60718`: the kernel's tag of a program (a hash of its
/// instructions), which tells two builds apart.
fn tag(info: &ProgramInfo) -> String {
    info.tag.0.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(args: &Args) -> Result<i32> {
    let layout = PinLayout::new(&args.pin_root.bpffs_root);
    if args.output.output == Output::Json {
        return json_status(&layout);
    }
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

    let inventory = Inventory::probe(&layout);
    println!("\nnode programs");
    for (program, link) in &inventory.node_programs {
        match link {
            Some(link) => println!(
                "  {:<12} attached  prog id {:<6} link id {:<6} cgroup id {}  {}",
                program.link,
                link.prog_id,
                link.link_id,
                link.cgroup_id,
                describe(link.prog_id)
            ),
            None => println!(
                "  {:<12} MISSING   (no link at {})",
                program.link,
                layout.link(program.link).display()
            ),
        }
    }
    println!("\nshort path programs");
    for (program, state) in &inventory.map_programs {
        match state {
            Some(state) => {
                let how = match state.attachment {
                    MapAttachment::Link { link_id, .. } => format!("link id {link_id:<6}"),
                    MapAttachment::Map => "no link (on the map)".to_owned(),
                };
                println!(
                    "  {:<12} attached  prog id {:<6} {how} map {}  {}",
                    program.pin,
                    state.prog_id,
                    program.map,
                    describe(state.prog_id)
                );
            }
            None => println!(
                "  {:<12} MISSING   (not attached to {})",
                program.pin, program.map
            ),
        }
    }
    println!("\nper-pod programs");
    for (program, prog_id) in &inventory.pod_programs {
        match prog_id {
            Some(id) => println!(
                "  {:<12} pinned    prog id {:<6} {}",
                program.pin,
                id,
                describe(*id)
            ),
            None => println!(
                "  {:<12} MISSING   (no program at {})",
                program.pin,
                layout.prog(program.pin).display()
            ),
        }
    }
    for (prog_id, links) in inventory.pod_links_by_program() {
        println!(
            "  {:<12} {links} pod link(s) run prog id {prog_id}  {}",
            "inbound",
            describe(prog_id)
        );
    }
    match PodMaps::open(&layout).and_then(|maps| maps.pods()) {
        Ok(pods) => println!("\ncaptured pods  {} (meshlane pods lists them)", pods.len()),
        Err(err) => println!("\ncaptured pods  unknown ({err})"),
    }
    println!("\ncounters");
    for read in read_counters(&layout).context("reading the counters")? {
        println!("  {:<28} {}", read.name, read.value);
    }
    Ok(if inventory.missing().is_empty() { 0 } else { 1 })
}

/// `status -o json`: the inventory (datapath/inventory.rs), the loaded
/// programs' names and tags by id, the pods' links, the pod count and the
/// counters. Exit 1 when something is missing, as in text.
fn json_status(layout: &PinLayout) -> Result<i32> {
    let loaded = layout.maps_dir().exists();
    let inventory = Inventory::probe(layout);
    let programs: BTreeMap<String, serde_json::Value> = ProgInfoIter::default()
        .map(|p| {
            (
                p.id.to_string(),
                json!({"name": p.name.to_string_lossy(), "tag": tag(&p)}),
            )
        })
        .collect();
    let ours: Vec<u32> = inventory
        .node_programs
        .iter()
        .filter_map(|(_, link)| link.map(|l| l.prog_id))
        .chain(
            inventory
                .map_programs
                .iter()
                .filter_map(|(_, s)| s.map(|s| s.prog_id)),
        )
        .chain(inventory.pod_programs.iter().filter_map(|(_, id)| *id))
        .collect();
    let links = inventory.pod_links_by_program();
    let programs: BTreeMap<String, serde_json::Value> = programs
        .into_iter()
        .filter(|(id, _)| {
            id.parse::<u32>()
                .is_ok_and(|id| ours.contains(&id) || links.contains_key(&id))
        })
        .collect();
    let pods = PodMaps::open(layout).and_then(|maps| maps.pods()).ok();
    let counters: BTreeMap<&str, u64> = if loaded {
        read_counters(layout)
            .context("reading the counters")?
            .into_iter()
            .map(|read| (read.name, read.value))
            .collect()
    } else {
        BTreeMap::new()
    };
    print_json(&json!({
        "version": env!("CARGO_PKG_VERSION"),
        "loaded": loaded,
        "inventory": inventory,
        "programs": programs,
        "pod_links_by_program": links,
        "captured_pods": pods.map(|p| p.len()),
        "counters": counters,
    }))?;
    Ok(if loaded && inventory.missing().is_empty() {
        0
    } else {
        1
    })
}

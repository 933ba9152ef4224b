//! `meshlane status`: the version, the node programs (program id, tag, link),
//! the per-pod programs, the number of captured pods and the event counters.

use anyhow::{Context, Result};
use libbpf_rs::query::{LinkTypeInfo, ProgInfoIter, ProgramInfo};
use libbpf_rs::Link;

use crate::datapath::counters::read_counters;
use crate::datapath::loader::{NODE_PROGRAMS, POD_PROGRAMS};
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
    println!("\nper-pod programs");
    for program in POD_PROGRAMS {
        let pin = layout.prog(program.pin);
        let state = if pin.exists() { "pinned" } else { "MISSING" };
        println!("  {:<12} {state}  {}", program.pin, pin.display());
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

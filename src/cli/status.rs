//! `meshlane status`: the node programs, their links and the event counters.

use anyhow::{Context, Result};
use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::Link;

use crate::datapath::counters::read_counters;
use crate::datapath::loader::NODE_PROGRAMS;

use super::args::Args;

pub fn run(args: &mut Args) -> Result<i32> {
    let layout = args.layout()?;
    args.finish()?;
    println!("pin root  {}", layout.root().display());
    if !layout.maps_dir().exists() {
        println!(
            "nothing loaded (no maps under {})",
            layout.maps_dir().display()
        );
        return Ok(1);
    }
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
                    "  {:<11} attached  prog id {:<6} link id {:<6} {cgroup}",
                    program.link, info.prog_id, info.id
                );
            }
            Err(_) => println!(
                "  {:<11} MISSING   (no link at {})",
                program.link,
                pin.display()
            ),
        }
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

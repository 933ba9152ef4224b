//! `meshlane upgrade-programs`: switches the node's programs to this binary's,
//! hook by hook, without detaching any (what the install agent does at start).

use anyhow::{Context, Result};

use crate::datapath::{upgrade_programs, UpgradeMode};

use super::args::Args;

pub fn run(args: &mut Args, force: bool) -> Result<i32> {
    let layout = args.layout()?;
    args.finish()?;
    let mode = if force {
        UpgradeMode::ForceEvenIfIdentical
    } else {
        UpgradeMode::WhatDiffers
    };
    let report = upgrade_programs(&layout, mode)
        .with_context(|| format!("upgrading the programs under {}", layout.root().display()))?;
    for program in &report.programs {
        println!("{program}");
    }
    println!(
        "\n{} replaced, {} current",
        report.replaced().count(),
        report.current().count()
    );
    Ok(0)
}

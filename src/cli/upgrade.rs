//! `meshlane upgrade-programs`: switches the node's programs to this binary's,
//! hook by hook, without detaching any (what the install agent does at start).

use anyhow::{Context, Result};

use crate::datapath::{upgrade_programs, PinLayout, UpgradeMode};
use crate::install::flags::PinRootFlag;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub pin_root: PinRootFlag,
    /// Switch every program, even identical ones
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &Args) -> Result<i32> {
    let layout = PinLayout::new(&args.pin_root.bpffs_root);
    let mode = if args.force {
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

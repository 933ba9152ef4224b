//! `meshlane precheck`: whether this node can run meshlane, check by check.

use anyhow::Result;

use crate::install::agent::resolve_cgroup;
use crate::install::precheck::{self, Verdict};
use crate::install::settings::{InstallSettings, BPFFS_ROOT, CGROUP};

use super::args::Args;
use super::install::settings_from;

pub fn run(args: &mut Args) -> Result<i32> {
    let values = settings_from(args, &[&BPFFS_ROOT, &CGROUP])?;
    args.finish()?;
    let settings = InstallSettings::from_values(&values)?;
    let cgroup = resolve_cgroup(settings.cgroup.as_deref()).map_err(|err| err.to_string());
    let checks = precheck::run_all(&settings.pin_root, cgroup);
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &checks {
        println!(
            "{:<4}  {:<width$}  {}",
            check.verdict.to_string(),
            check.name,
            check.detail
        );
        if check.verdict != Verdict::Ok {
            if let Some(fix) = &check.fix {
                println!("      {:<width$}  fix: {fix}", "");
            }
        }
    }
    let worst = precheck::worst(&checks);
    println!("\nverdict: {worst}");
    Ok(if worst == Verdict::Fail { 1 } else { 0 })
}

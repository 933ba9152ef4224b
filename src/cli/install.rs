//! `meshlane install`: the install DaemonSet's main process (see `install::agent`).

use std::path::Path;

use anyhow::Result;

use crate::install::agent;
use crate::install::settings::{self, InstallSettings, INSTALL_SETTINGS};

use super::args::Args;

/// Reads every install setting from its flag, else its environment variable.
pub fn settings_from(args: &mut Args, wanted: &[&settings::Setting]) -> Result<settings::Values> {
    let mut flags = Vec::new();
    for setting in wanted {
        if let Some(value) = args.option(setting.flag)? {
            flags.push((setting.flag, value));
        }
    }
    Ok(settings::resolve(
        wanted,
        |flag| {
            flags
                .iter()
                .find(|(f, _)| *f == flag)
                .map(|(_, v)| v.clone())
        },
        |env| std::env::var(env).ok(),
    ))
}

pub fn run(args: &mut Args) -> Result<i32> {
    let values = settings_from(args, &INSTALL_SETTINGS)?;
    args.finish()?;
    let settings = InstallSettings::from_values(&values)?;
    // /proc/self/exe is this very program even if its file was replaced since.
    Ok(agent::run(settings, Path::new("/proc/self/exe"))?)
}

/// The help text of the install settings.
pub fn usage() -> String {
    INSTALL_SETTINGS
        .iter()
        .map(|s| format!("    --{:<20} ${:<28} {}", s.flag, s.env, s.help))
        .collect::<Vec<_>>()
        .join("\n")
}

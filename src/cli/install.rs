//! `meshlane install`: the install DaemonSet's main process (see `install::agent`).

use std::path::Path;

use anyhow::Result;

use crate::install::flags::InstallFlags;
use crate::install::settings::InstallSettings;
use crate::install::{agent, InstallError};

use super::UsageError;

/// The agent copies the plugin binary, chains meshlane after the primary CNI,
/// attaches the node programs and keeps them in place, serves /healthz,
/// /readyz and /metrics, and removes the node's startup taint once ready.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub flags: InstallFlags,
}

/// A setting error found after parsing is a usage error (exit 2).
pub fn settings_error(err: InstallError) -> anyhow::Error {
    match err {
        InstallError::Setting { setting, problem } => {
            UsageError(format!("--{setting}: {problem}")).into()
        }
        other => other.into(),
    }
}

pub fn run(args: &Args) -> Result<i32> {
    let settings = InstallSettings::from_flags(&args.flags).map_err(settings_error)?;
    crate::log::init_agent(settings.log_level, settings.log_format);
    // /proc/self/exe is this very program even if its file was replaced since.
    Ok(agent::run(settings, Path::new("/proc/self/exe"))?)
}

//! `meshlane uninstall`: removes meshlane from this node (see `install::uninstall`).

use anyhow::Result;

use crate::install::flags::{BinDirFlag, ConfDirFlag, KubeconfigFlags, PinRootFlag};
use crate::install::settings::KubeconfigFiles;
use crate::install::uninstall::{self, UninstallSettings};
use crate::install::InstallError;
use crate::log::{Format, Level};

/// Exit code when captured pods are still there and `--force` was not given.
pub const EXIT_PODS_CAPTURED: i32 = 3;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub bin_dir: BinDirFlag,
    #[command(flatten)]
    pub conf_dir: ConfDirFlag,
    #[command(flatten)]
    pub pin_root: PinRootFlag,
    #[command(flatten)]
    pub kubeconfig: KubeconfigFlags,
    /// Remove meshlane even while captured pods run (they lose capture at once)
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &Args) -> Result<i32> {
    crate::log::init_agent(Level::Info, Format::Logfmt);
    let settings = UninstallSettings {
        cni_bin_dir: args.bin_dir.cni_bin_dir.clone(),
        cni_conf_dir: args.conf_dir.cni_conf_dir.clone(),
        pin_root: args.pin_root.bpffs_root.clone(),
        kubeconfig: KubeconfigFiles::from_flags(&args.kubeconfig),
        force: args.force,
    };
    match uninstall::run(&settings) {
        Ok(removed) => {
            println!(
                "meshlane removed: {} config file change(s), binary {}, pins {}, kubeconfig {}",
                removed.config_changes.len(),
                if removed.binary { "removed" } else { "absent" },
                if removed.pins { "removed" } else { "absent" },
                if removed.credentials {
                    "removed"
                } else {
                    "absent"
                },
            );
            Ok(0)
        }
        Err(err @ InstallError::PodsStillCaptured { .. }) => {
            eprintln!("meshlane uninstall: refusing: {err}");
            Ok(EXIT_PODS_CAPTURED)
        }
        Err(err) => Err(err.into()),
    }
}

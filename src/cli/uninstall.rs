//! `meshlane uninstall`: removes meshlane from this node (see `install::uninstall`).

use anyhow::Result;

use crate::install::settings::{
    InstallSettings, BPFFS_ROOT, CNI_BIN_DIR, CNI_CONF_DIR, KUBECONFIG, WRITE_KUBECONFIG,
};
use crate::install::uninstall::{self, UninstallSettings};
use crate::install::InstallError;

use super::args::Args;
use super::install::settings_from;

/// Exit code when captured pods are still there and `--force` was not given.
pub const EXIT_PODS_CAPTURED: i32 = 3;

pub fn run(args: &mut Args, force: bool) -> Result<i32> {
    let values = settings_from(
        args,
        &[
            &CNI_BIN_DIR,
            &CNI_CONF_DIR,
            &BPFFS_ROOT,
            &KUBECONFIG,
            &WRITE_KUBECONFIG,
        ],
    )?;
    args.finish()?;
    let install = InstallSettings::from_values(&values)?;
    let settings = UninstallSettings {
        cni_bin_dir: install.cni_bin_dir,
        cni_conf_dir: install.cni_conf_dir,
        pin_root: install.pin_root,
        kubeconfig: install.cluster.kubeconfig,
        force,
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

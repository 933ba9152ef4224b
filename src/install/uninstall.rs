//! `meshlane uninstall`: takes meshlane off a node, in the order that keeps the
//! node consistent at every step — first the chain entry (no new pod is
//! captured), then the binary, then the links (detached explicitly, so that no
//! program runs once uninstall returns) and the pins (the maps go with them).
//!
//! It refuses while pods still have capture records, unless forced: their
//! sidecars would suddenly see plain traffic.

use std::path::{Path, PathBuf};

use crate::datapath::bpffs::is_on_bpffs;
use crate::datapath::link_detach::detach_pinned_links;
use crate::datapath::{PinLayout, PodMaps};

use super::conflist::{self, FileChange};
use super::error::InstallError;
use super::files;
use super::settings::KubeconfigFiles;
use crate::log::{info, warn};

pub struct UninstallSettings {
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub pin_root: PathBuf,
    /// The plugin's kubeconfig the agent wrote (its token copy sits beside it).
    pub kubeconfig: Option<KubeconfigFiles>,
    pub force: bool,
}

/// The captured pods, as `namespace/name` (or the netns cookie when no CNI
/// attachment names the pod). Empty when nothing is loaded.
pub fn captured_pods(layout: &PinLayout) -> Result<Vec<String>, InstallError> {
    if !layout.map(crate::datapath::names::maps::PODS).exists() {
        return Ok(Vec::new());
    }
    let maps = PodMaps::open(layout)?;
    let attachments = maps.attachments()?;
    let mut pods: Vec<String> = maps
        .pods()?
        .into_iter()
        .map(|(cookie, _)| {
            let names: Vec<String> = attachments
                .iter()
                .filter(|a| a.netns_cookie == cookie && !a.pod_name.is_empty())
                .map(|a| format!("{}/{}", a.pod_namespace, a.pod_name))
                .collect();
            match names.first() {
                Some(name) => name.clone(),
                None => format!("(netns cookie {cookie})"),
            }
        })
        .collect();
    pods.sort();
    pods.dedup();
    Ok(pods)
}

/// What was removed, for the summary.
#[derive(Debug, Default)]
pub struct Removed {
    pub config_changes: Vec<FileChange>,
    pub binary: bool,
    pub pins: bool,
    /// The plugin's kubeconfig and the agent's token copy.
    pub credentials: bool,
}

pub fn run(settings: &UninstallSettings) -> Result<Removed, InstallError> {
    let layout = PinLayout::new(&settings.pin_root);
    let pods = captured_pods(&layout)?;
    if !pods.is_empty() {
        if !settings.force {
            return Err(InstallError::PodsStillCaptured {
                count: pods.len(),
                pods: pods.join(", "),
            });
        }
        warn(
            "forced: these pods lose capture now",
            &[("count", &pods.len()), ("pods", &pods.join(","))],
        );
    }
    let mut removed = Removed::default();

    let dir = files::read_net_dir(&settings.cni_conf_dir)?;
    removed.config_changes = conflist::plan_uninstall(&dir);
    files::apply_changes(&settings.cni_conf_dir, &removed.config_changes, &dir)?;
    for change in &removed.config_changes {
        match change {
            FileChange::Write { file, .. } => {
                info("removed meshlane's chain entry", &[("file", file)])
            }
            FileChange::Remove { file } => {
                info("removed a config meshlane made", &[("file", file)])
            }
        }
    }

    let binary = settings.cni_bin_dir.join("meshlane");
    removed.binary = remove_file(&binary, "removed the plugin binary")?;

    if let Some(kubeconfig) = &settings.kubeconfig {
        // The token is a credential: it must not outlive meshlane on the node.
        for path in [kubeconfig.token_write_path(), kubeconfig.write_path.clone()] {
            removed.credentials |= remove_file(&path, "removed")?;
        }
    }

    removed.pins = remove_pins(&settings.pin_root)?;
    Ok(removed)
}

/// Removes a file meshlane put there, logging `what` when it did: true. A file
/// that is not there is no error (uninstall runs again after a partial one).
fn remove_file(path: &Path, what: &str) -> Result<bool, InstallError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            info(what, &[("path", &path.display())]);
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(InstallError::io("removing", path.to_owned())(err)),
    }
}

/// Removes the pin root — only on a bpffs: a typo in the root must never turn
/// into a recursive delete of real files.
fn remove_pins(root: &Path) -> Result<bool, InstallError> {
    if !root.exists() {
        return Ok(false);
    }
    if !is_on_bpffs(root) {
        return Err(InstallError::Setting {
            setting: "bpffs-root",
            problem: format!("{} is not on a bpffs; not removing it", root.display()),
        });
    }
    let detached = detach_pinned_links(&PinLayout::new(root));
    std::fs::remove_dir_all(root).map_err(InstallError::io("removing the pins under", root))?;
    info(
        "removed the pinned programs, links and maps (programs detached)",
        &[("pins", &root.display()), ("links_detached", &detached)],
    );
    Ok(true)
}

//! What every meshlane command derives from its request: the parsed settings,
//! the pin layout, the cgroup, and the pod's name.

use std::path::PathBuf;

use crate::cni::{AttachmentRequest, CniError, NetConf};
use crate::datapath::cgroup::host_cgroup2_root;
use crate::datapath::{AttachmentKey, PinLayout};

use super::config::PluginConfig;

pub struct Context {
    pub config: PluginConfig,
    pub layout: PinLayout,
}

impl Context {
    /// Parses the settings and starts the log, labelled with the command and pod.
    pub fn for_attachment(command: &str, request: &AttachmentRequest) -> Result<Self, CniError> {
        let (namespace, name) = pod_name(request);
        let id = &request.attachment.container_id;
        let short_id = id.get(..12).unwrap_or(id);
        let mut label = format!("{command} {short_id}/{}", request.attachment.ifname);
        if !name.is_empty() {
            label.push_str(&format!(" {namespace}/{name}"));
        }
        Self::for_netconf_labelled(&request.config, label)
    }

    pub fn for_netconf(command: &str, netconf: &NetConf) -> Result<Self, CniError> {
        Self::for_netconf_labelled(netconf, command.to_owned())
    }

    fn for_netconf_labelled(netconf: &NetConf, label: String) -> Result<Self, CniError> {
        let config = PluginConfig::from_keys(&netconf.plugin_keys())?;
        crate::log::init(config.log_file.as_deref(), config.log_level, label);
        let layout = PinLayout::new(&config.pin_root);
        Ok(Context { config, layout })
    }

    /// The cgroup the node programs attach to: configured, else the cgroup2 mount.
    pub fn cgroup(&self) -> Result<PathBuf, CniError> {
        match &self.config.cgroup {
            Some(path) => Ok(path.clone()),
            None => Ok(host_cgroup2_root()?),
        }
    }
}

pub fn attachment_key(request: &AttachmentRequest) -> AttachmentKey {
    AttachmentKey::new(&request.attachment.container_id, &request.attachment.ifname)
}

/// `K8S_POD_NAMESPACE` and `K8S_POD_NAME` from CNI_ARGS (empty outside Kubernetes).
pub fn pod_name(request: &AttachmentRequest) -> (String, String) {
    let arg = |name: &str| {
        request
            .args
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    (arg("K8S_POD_NAMESPACE"), arg("K8S_POD_NAME"))
}

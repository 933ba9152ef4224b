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
    /// Parses the settings and starts the log, whose records carry the command,
    /// the container id, the interface and the pod as fields.
    pub fn for_attachment(command: &str, request: &AttachmentRequest) -> Result<Self, CniError> {
        let (namespace, name) = pod_name(request);
        let mut context = vec![
            ("command", command.to_owned()),
            ("container_id", request.attachment.container_id.clone()),
            ("ifname", request.attachment.ifname.clone()),
        ];
        if !name.is_empty() {
            context.push(("pod", format!("{namespace}/{name}")));
        }
        Self::for_netconf_with(&request.config, context)
    }

    pub fn for_netconf(command: &str, netconf: &NetConf) -> Result<Self, CniError> {
        Self::for_netconf_with(netconf, vec![("command", command.to_owned())])
    }

    fn for_netconf_with(
        netconf: &NetConf,
        context: Vec<(&'static str, String)>,
    ) -> Result<Self, CniError> {
        let config = PluginConfig::from_keys(&netconf.plugin_keys())?;
        crate::log::init_plugin(
            config.log_file.as_deref(),
            config.log_max_bytes,
            config.log_level,
            config.log_format,
            context,
        );
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

//! The conflist of a test node: the reference `bridge` plugin (with `host-local`
//! IPAM) as the primary CNI, optional extra plugins, then `meshlane`, the way the
//! installer appends it to a real node's primary conflist.

use serde_json::{json, Map, Value};

use super::chain::{Conflist, POD_ANNOTATIONS_CAPABILITY};

/// The network name (host-local keeps its reservations in `<dataDir>/<name>/`).
pub const NETWORK_NAME: &str = "meshlane-test";
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";

/// Everything the node decides about its chain.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub cni_version: String,
    pub bridge: String,
    pub subnet_v4: String,
    pub subnet_v6: Option<String>,
    pub ipam_data_dir: String,
    /// Entries placed between bridge and meshlane.
    pub extra_plugins: Vec<Value>,
    /// The meshlane entry, or None for a chain without it.
    pub meshlane: Option<Value>,
}

pub fn build(settings: &ChainSettings) -> Conflist {
    let mut plugins = vec![bridge_entry(settings)];
    plugins.extend(settings.extra_plugins.iter().cloned());
    plugins.extend(settings.meshlane.iter().cloned());
    Conflist {
        name: NETWORK_NAME.to_string(),
        cni_version: settings.cni_version.clone(),
        plugins,
    }
}

/// The `type` of each plugin of a conflist, in chain order.
pub fn plugin_types(conflist: &Value) -> Vec<&str> {
    conflist["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("no plugins array in {conflist}"))
        .iter()
        .map(|plugin| {
            plugin["type"]
                .as_str()
                .unwrap_or_else(|| panic!("no type: {plugin}"))
        })
        .collect()
}

/// `isGateway` gives the bridge the first address of each range, so pods have a
/// next hop; `ipMasq` stays off because it would add iptables rules.
fn bridge_entry(settings: &ChainSettings) -> Value {
    let mut ranges = vec![json!([{ "subnet": settings.subnet_v4 }])];
    let mut routes = vec![json!({ "dst": "0.0.0.0/0" })];
    if let Some(v6) = &settings.subnet_v6 {
        ranges.push(json!([{ "subnet": v6 }]));
        routes.push(json!({ "dst": "::/0" }));
    }
    json!({
        "type": "bridge",
        "bridge": settings.bridge,
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "dataDir": settings.ipam_data_dir,
            "ranges": ranges,
            "routes": routes,
        },
    })
}

/// meshlane's entry: declares the pod-annotations capability (as the installer
/// writes it), plus `extra` keys, which win.
pub fn meshlane_entry(extra: &Map<String, Value>) -> Value {
    let mut entry = json!({
        "type": "meshlane",
        "capabilities": { POD_ANNOTATIONS_CAPABILITY: true },
    });
    let object = entry.as_object_mut().expect("literal object");
    for (key, value) in extra {
        object.insert(key.clone(), value.clone());
    }
    entry
}

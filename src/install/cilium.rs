//! Cilium's socket load balancer next to meshlane (precheck).
//!
//! Cilium's socket LB (its kube-proxy replacement) attaches to the same cgroup
//! hooks as meshlane and rewrites a pod's connect to a service VIP into a
//! backend address before meshlane sees it: Envoy would then see the pod IP,
//! not the service, and its routing by service would not apply. With
//! `socketLB.hostNamespaceOnly=true` (Helm; `bpf-lb-sock-hostns-only: "true"`
//! in the `cilium-config` ConfigMap) it leaves pods' sockets alone and balances
//! at the pod's interface instead, which is what Istio documents for Cilium.
//!
//! Where the setting is read: the `cilium-config` ConfigMap through the API
//! (the agent's service account may read that one ConfigMap). The node alone
//! cannot tell: the same `cil_sock*` programs are attached either way, and the
//! choice is compiled into them. So precheck says OK only when it read the
//! ConfigMap, and warns with the fix when it could not.

use serde_json::{Map, Value};

use super::precheck::{check, Check, Verdict};

pub const CILIUM_CNI_TYPE: &str = "cilium-cni";
pub const HOSTNS_ONLY_KEY: &str = "bpf-lb-sock-hostns-only";
pub const DEFAULT_CONFIG_MAP: &str = "kube-system/cilium-config";

pub const FIX: &str = "install Cilium with --set socketLB.hostNamespaceOnly=true (cilium-config: \
                       bpf-lb-sock-hostns-only: \"true\", then restart the cilium pods) so that \
                       Envoy sees the service addresses pods ask for";

/// Whether a loaded program is one of Cilium's socket LB programs.
pub fn is_socket_lb_program(name: &str) -> bool {
    name.starts_with("cil_sock")
}

/// What precheck could learn of the ConfigMap.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigRead {
    Data(Map<String, Value>),
    NotFound,
    /// Why it could not be read (no API access, forbidden, unreachable).
    Unreadable(String),
}

/// The settings that matter, as Cilium writes them.
fn flag(data: &Map<String, Value>, key: &str) -> Option<bool> {
    match data.get(key)?.as_str()? {
        "true" | "strict" => Some(true),
        "false" | "disabled" => Some(false),
        _ => None,
    }
}

/// Whether Cilium's socket LB reaches into pods, from its ConfigMap's data:
/// `Some(false)` when it stays in the host namespace or is off.
pub fn socket_lb_in_pods(data: &Map<String, Value>) -> Option<bool> {
    if flag(data, HOSTNS_ONLY_KEY) == Some(true) {
        return Some(false);
    }
    flag(data, "bpf-lb-sock").or(flag(data, "kube-proxy-replacement"))
}

/// The check line; `None` when there is no sign of Cilium on the node.
pub fn socket_lb_check(
    in_chain: bool,
    programs_seen: bool,
    config_map: &str,
    read: &ConfigRead,
) -> Option<Check> {
    if !in_chain && !programs_seen {
        return None;
    }
    const NAME: &str = "Cilium socket LB";
    Some(match read {
        ConfigRead::Data(data) => match socket_lb_in_pods(data) {
            Some(false) => check(
                NAME,
                Verdict::Ok,
                format!("stays out of pods' sockets ({config_map}: {HOSTNS_ONLY_KEY} or socket LB off)"),
                None,
            ),
            Some(true) => check(
                NAME,
                Verdict::Warn,
                format!("{config_map} enables the socket LB in pods ({HOSTNS_ONLY_KEY} is not \"true\")"),
                Some(FIX),
            ),
            None => check(
                NAME,
                Verdict::Warn,
                format!("cannot tell from {config_map} whether the socket LB reaches into pods"),
                Some(FIX),
            ),
        },
        ConfigRead::NotFound => check(
            NAME,
            Verdict::Warn,
            format!("Cilium runs here, but {config_map} does not exist: cannot tell its socket LB mode"),
            Some(FIX),
        ),
        ConfigRead::Unreadable(why) => check(
            NAME,
            Verdict::Warn,
            format!("Cilium runs here; cannot read {config_map} ({why}), so cannot tell its socket LB mode"),
            Some(FIX),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> ConfigRead {
        ConfigRead::Data(value.as_object().unwrap().clone())
    }

    #[test]
    fn verdicts_follow_the_config_map() {
        let cm = DEFAULT_CONFIG_MAP;
        let ok = data(json!({"bpf-lb-sock": "true", "bpf-lb-sock-hostns-only": "true"}));
        assert_eq!(
            socket_lb_check(true, true, cm, &ok).unwrap().verdict,
            Verdict::Ok
        );
        let off = data(json!({"kube-proxy-replacement": "false"}));
        assert_eq!(
            socket_lb_check(true, false, cm, &off).unwrap().verdict,
            Verdict::Ok
        );
        let in_pods =
            data(json!({"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "false"}));
        let warn = socket_lb_check(false, true, cm, &in_pods).unwrap();
        assert_eq!(warn.verdict, Verdict::Warn);
        assert_eq!(warn.fix.as_deref(), Some(FIX));
        for unknown in [
            data(json!({})),
            ConfigRead::NotFound,
            ConfigRead::Unreadable("forbidden".into()),
        ] {
            let line = socket_lb_check(true, false, cm, &unknown).unwrap();
            assert_eq!(line.verdict, Verdict::Warn, "{unknown:?}");
            assert!(line
                .fix
                .unwrap()
                .contains("socketLB.hostNamespaceOnly=true"));
        }
        assert_eq!(
            socket_lb_check(false, false, cm, &ConfigRead::NotFound),
            None
        );
    }

    #[test]
    fn cilium_programs_are_recognised() {
        assert!(is_socket_lb_program("cil_sock4_connect"));
        assert!(!is_socket_lb_program("ml_connect4"));
    }
}

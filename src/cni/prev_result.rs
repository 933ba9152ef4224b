//! The previous plugin's result (`prevResult`): read to learn the pod's IPs,
//! and passed on unchanged.
//!
//! Reads both result shapes: 0.3.x/0.4.0 (each IP carries `"version": "4"|"6"`)
//! and 1.x (no `version`). Parsing is strict about the fields meshlane relies on
//! and silent about fields it does not know: those are never dropped, because
//! [`PrevResult::pass_through`] returns the original document, not this model.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::error::CniError;
use super::version::CniVersion;
use crate::json_kind::json_kind;

/// The root of every path in error messages.
const ROOT: &str = "prevResult";

/// An address with its prefix length, as written in results (`10.22.0.5/16`).
/// The host bits are kept: this is an interface address, not a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl std::str::FromStr for IpPrefix {
    type Err = ();

    /// Strict CIDR: an address, `/`, and a decimal length without sign or
    /// leading zeros that fits the family.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, len) = text.split_once('/').ok_or(())?;
        let address: IpAddr = address.parse().map_err(|_| ())?;
        let canonical = !len.is_empty()
            && len.bytes().all(|b| b.is_ascii_digit())
            && (len == "0" || !len.starts_with('0'));
        if !canonical {
            return Err(());
        }
        let prefix_len: u8 = len.parse().map_err(|_| ())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(());
        }
        Ok(IpPrefix {
            address,
            prefix_len,
        })
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// An entry of `interfaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the pod; absent or empty on the host.
    pub sandbox: Option<String>,
    pub socket_path: Option<String>,
    pub pci_id: Option<String>,
}

impl Interface {
    /// Whether the interface lives in the pod (a non-empty `sandbox`).
    pub fn in_sandbox(&self) -> bool {
        self.sandbox.as_deref().is_some_and(|s| !s.is_empty())
    }
}

/// An entry of `ips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpPrefix,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; checked to be in range.
    pub interface: Option<usize>,
}

/// An entry of `routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpPrefix,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

/// `dns`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// One of the pod's own addresses, as meshlane's datapath needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodInterfaceIp {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The pod interface the address is on, when the result says.
    pub interface: Option<String>,
}

/// A parsed `prevResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrevResult {
    /// The result's own `cniVersion`, as written (runtimes set it to the request's).
    pub cni_version: Option<String>,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

impl PrevResult {
    /// Parses and validates; every failure is code 6 naming the JSON path, e.g.
    /// `prevResult.ips[1].address: "10.0.0.300/24" is not an IP prefix`.
    pub fn parse(prev: &Value) -> Result<Self, CniError> {
        let obj = as_object(prev, ROOT)?;
        let interfaces = array_of(obj, ROOT, "interfaces", parse_interface)?;
        let ips = array_of(obj, ROOT, "ips", |value, path| {
            parse_ip(value, path, interfaces.len())
        })?;
        let routes = array_of(obj, ROOT, "routes", parse_route)?;
        let dns = match present(obj, "dns") {
            Some(value) => parse_dns(value, &format!("{ROOT}.dns"))?,
            None => Dns::default(),
        };
        Ok(PrevResult {
            cni_version: opt_string(obj, ROOT, "cniVersion")?,
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    /// The pod's IPs: those on an interface inside the sandbox, plus those the
    /// result does not tie to any interface (IPAM-style results). Addresses on
    /// host-side interfaces (bridge, host veth) are not the pod's.
    pub fn pod_ips(&self) -> Vec<PodInterfaceIp> {
        self.ips
            .iter()
            .filter_map(|ip| {
                let interface = match ip.interface {
                    None => None,
                    Some(index) => {
                        let iface = self.interfaces.get(index)?;
                        if !iface.in_sandbox() {
                            return None;
                        }
                        Some(iface.name.clone())
                    }
                };
                Some(PodInterfaceIp {
                    address: ip.address.address,
                    prefix_len: ip.address.prefix_len,
                    interface,
                })
            })
            .collect()
    }

    /// The result a chained plugin prints when it changes nothing: `prev`
    /// exactly as received (unknown fields included), with `cniVersion` set to
    /// the request's version as the spec requires.
    pub fn pass_through(prev: &Value, version: CniVersion) -> Value {
        let mut result = prev.clone();
        if let Value::Object(map) = &mut result {
            map.insert("cniVersion".into(), Value::from(version.as_str()));
        }
        result
    }
}

fn decode_err(path: &str, problem: impl std::fmt::Display) -> CniError {
    CniError::decode(path, problem)
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, CniError> {
    value.as_object().ok_or_else(|| {
        decode_err(
            path,
            format!("expected an object, got {}", json_kind(value)),
        )
    })
}

/// The value at `key`, treating `null` as absent (Go encoders emit it).
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|value| !value.is_null())
}

/// An optional array whose elements `parse` turns into `T`, with paths `path.key[i]`.
fn array_of<T>(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    mut parse: impl FnMut(&Value, &str) -> Result<T, CniError>,
) -> Result<Vec<T>, CniError> {
    let path = format!("{path}.{key}");
    match present(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse(item, &format!("{path}[{index}]")))
            .collect(),
        Some(other) => Err(decode_err(
            &path,
            format!("expected an array, got {}", json_kind(other)),
        )),
    }
}

fn opt_string(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>, CniError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(decode_err(
            &format!("{path}.{key}"),
            format!("expected a string, got {other}"),
        )),
    }
}

fn opt_u32(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u32>, CniError> {
    match present(obj, key) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                decode_err(
                    &format!("{path}.{key}"),
                    format!("{value} is not an unsigned 32-bit integer"),
                )
            }),
    }
}

fn string_list(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Vec<String>, CniError> {
    array_of(obj, path, key, |item, item_path| match item {
        Value::String(text) => Ok(text.clone()),
        other => Err(decode_err(
            item_path,
            format!("expected a string, got {other}"),
        )),
    })
}

fn prefix(obj: &Map<String, Value>, path: &str, key: &str) -> Result<IpPrefix, CniError> {
    let path = format!("{path}.{key}");
    match present(obj, key) {
        None => Err(decode_err(&path, "is missing")),
        Some(Value::String(text)) => text
            .parse()
            .map_err(|()| decode_err(&path, format!("{text:?} is not an IP prefix"))),
        Some(other) => Err(decode_err(
            &path,
            format!("expected an IP prefix string, got {other}"),
        )),
    }
}

fn opt_ip(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<IpAddr>, CniError> {
    let path_of = || format!("{path}.{key}");
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| decode_err(&path_of(), format!("{text:?} is not an IP address"))),
        Some(other) => Err(decode_err(
            &path_of(),
            format!("expected an IP address string, got {other}"),
        )),
    }
}

fn parse_interface(value: &Value, path: &str) -> Result<Interface, CniError> {
    let obj = as_object(value, path)?;
    Ok(Interface {
        name: opt_string(obj, path, "name")?
            .ok_or_else(|| decode_err(&format!("{path}.name"), "is missing"))?,
        mac: opt_string(obj, path, "mac")?,
        mtu: opt_u32(obj, path, "mtu")?,
        sandbox: opt_string(obj, path, "sandbox")?,
        socket_path: opt_string(obj, path, "socketPath")?,
        pci_id: opt_string(obj, path, "pciID")?,
    })
}

fn parse_ip(value: &Value, path: &str, interface_count: usize) -> Result<IpConfig, CniError> {
    let obj = as_object(value, path)?;
    let address = prefix(obj, path, "address")?;

    // 0.3.x/0.4.0 tag the family; a tag that contradicts the address means the
    // result is corrupt, so it is not trusted for anything.
    if let Some(tag) = present(obj, "version") {
        let tag_path = format!("{path}.version");
        let family = match tag {
            Value::String(text) if text == "4" => 4,
            Value::String(text) if text == "6" => 6,
            other => {
                return Err(decode_err(
                    &tag_path,
                    format!("{other} is not \"4\" or \"6\""),
                ))
            }
        };
        let actual = if address.address.is_ipv4() { 4 } else { 6 };
        if family != actual {
            return Err(decode_err(
                &tag_path,
                format!("\"{family}\" contradicts the IPv{actual} address {address}"),
            ));
        }
    }

    let interface = match present(obj, "interface") {
        None => None,
        Some(index) => {
            let index_path = format!("{path}.interface");
            let index = index
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    decode_err(
                        &index_path,
                        format!("{index} is not an index into interfaces"),
                    )
                })?;
            if index >= interface_count {
                return Err(decode_err(
                    &index_path,
                    format!(
                        "index {index} is out of range (the result has {interface_count} interfaces)"
                    ),
                ));
            }
            Some(index)
        }
    };

    Ok(IpConfig {
        address,
        gateway: opt_ip(obj, path, "gateway")?,
        interface,
    })
}

fn parse_route(value: &Value, path: &str) -> Result<Route, CniError> {
    let obj = as_object(value, path)?;
    Ok(Route {
        dst: prefix(obj, path, "dst")?,
        gw: opt_ip(obj, path, "gw")?,
        mtu: opt_u32(obj, path, "mtu")?,
        advmss: opt_u32(obj, path, "advmss")?,
        priority: opt_u32(obj, path, "priority")?,
        table: opt_u32(obj, path, "table")?,
        scope: opt_u32(obj, path, "scope")?,
    })
}

fn parse_dns(value: &Value, path: &str) -> Result<Dns, CniError> {
    let obj = as_object(value, path)?;
    Ok(Dns {
        nameservers: string_list(obj, path, "nameservers")?,
        domain: opt_string(obj, path, "domain")?,
        search: string_list(obj, path, "search")?,
        options: string_list(obj, path, "options")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::ErrorCode;
    use serde_json::json;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // Verbatim output of Debian's `bridge` + `host-local` 1.1.1 (dual-stack
    // ranges, isGateway), captured in a throw-away netns pair (tests/fixtures/cni/).
    const BRIDGE_0_3_1: &str = include_str!("../../tests/fixtures/cni/bridge-0.3.1.json");
    const BRIDGE_0_4_0: &str = include_str!("../../tests/fixtures/cni/bridge-0.4.0.json");
    const BRIDGE_1_0_0: &str = include_str!("../../tests/fixtures/cni/bridge-1.0.0.json");
    // `host-local` alone at 1.0.0: an IPAM result, no interfaces.
    const HOST_LOCAL_1_0_0: &str = include_str!("../../tests/fixtures/cni/host-local-1.0.0.json");

    fn doc(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture is JSON")
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(text.parse::<Ipv6Addr>().expect("fixture address"))
    }

    fn pod_ip(address: IpAddr, prefix_len: u8, interface: Option<&str>) -> PodInterfaceIp {
        PodInterfaceIp {
            address,
            prefix_len,
            interface: interface.map(str::to_owned),
        }
    }

    #[test]
    fn bridge_results_of_every_version() {
        // (fixture, version, pod interface name, last octet of the pod's IPs)
        let table = [
            (BRIDGE_0_3_1, "0.3.1", "eth0", 2),
            (BRIDGE_0_4_0, "0.4.0", "net1", 3),
            (BRIDGE_1_0_0, "1.0.0", "net2", 4),
        ];
        for (fixture, version, ifname, host) in table {
            let result = PrevResult::parse(&doc(fixture)).expect(version);
            assert_eq!(result.cni_version.as_deref(), Some(version));
            assert_eq!(result.interfaces.len(), 3);
            assert!(
                !result.interfaces[0].in_sandbox(),
                "the bridge is on the host"
            );
            assert!(
                !result.interfaces[1].in_sandbox(),
                "the host veth is on the host"
            );
            assert_eq!(result.interfaces[2].name, ifname);
            assert_eq!(
                result.interfaces[2].sandbox.as_deref(),
                Some("/var/run/netns/mlcni-pod")
            );
            assert!(result.interfaces[2].mac.is_some());
            assert_eq!(result.ips.len(), 2);
            assert_eq!(result.ips[0].gateway, Some(v4(10, 22, 0, 1)));
            assert_eq!(result.ips[1].gateway, Some(v6("fd00:10:22::1")));
            assert_eq!(result.ips[0].interface, Some(2));
            assert_eq!(
                result
                    .routes
                    .iter()
                    .map(|r| r.dst.to_string())
                    .collect::<Vec<_>>(),
                ["0.0.0.0/0", "::/0"]
            );
            assert_eq!(result.routes[0].gw, None);
            assert_eq!(
                result.dns,
                Dns {
                    nameservers: vec!["10.22.0.1".into()],
                    domain: None,
                    search: vec!["default.svc.cluster.local".into()],
                    options: vec![],
                }
            );
            assert_eq!(
                result.pod_ips(),
                vec![
                    pod_ip(v4(10, 22, 0, host), 16, Some(ifname)),
                    pod_ip(v6(&format!("fd00:10:22::{host}")), 64, Some(ifname)),
                ],
                "{version}"
            );
        }
    }

    #[test]
    fn ipam_result_ips_without_interface_are_the_pods() {
        let result = PrevResult::parse(&doc(HOST_LOCAL_1_0_0)).expect("valid");
        assert!(result.interfaces.is_empty());
        assert_eq!(result.dns, Dns::default());
        assert_eq!(result.pod_ips(), vec![pod_ip(v4(10, 23, 0, 2), 24, None)]);
    }

    #[test]
    fn host_side_addresses_are_not_the_pods() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "veth1", "sandbox": ""},
                {"name": "eth0", "sandbox": "/proc/4242/ns/net", "mtu": 1450}
            ],
            "ips": [
                {"address": "10.1.0.1/24", "interface": 0},
                {"address": "10.1.0.9/24", "interface": 1},
                {"address": "10.1.0.5/24", "interface": 2},
                {"address": "192.168.7.7/32"}
            ]
        });
        let result = PrevResult::parse(&prev).expect("valid");
        assert_eq!(result.interfaces[2].mtu, Some(1450));
        assert_eq!(
            result.pod_ips(),
            vec![
                pod_ip(v4(10, 1, 0, 5), 24, Some("eth0")),
                pod_ip(v4(192, 168, 7, 7), 32, None),
            ]
        );
    }

    /// Calico-style: only the host-side `cali*` interface, IPs without an index.
    /// Cilium-style: extra keys everywhere. Both must parse and pass through intact.
    fn foreign_results() -> [Value; 2] {
        [
            json!({
                "cniVersion": "0.3.1",
                "interfaces": [{"name": "cali12ab34cd56e"}],
                "ips": [
                    {"version": "4", "address": "192.168.129.77/32"},
                    {"version": "6", "address": "fd00:192:168:129::4d/128"}
                ],
                "dns": {},
                "x-calico": {"workloadEndpoint": "node1-k8s-web--0-eth0", "profiles": ["kns.default"]}
            }),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "lxc4d2f", "mac": "6a:1b:2c:3d:4e:5f", "x-cilium-endpoint": 1234},
                    {"name": "eth0", "mac": "9e:8d:7c:6b:5a:49", "sandbox": "/var/run/netns/cni-5f2e", "pciID": "", "socketPath": ""}
                ],
                "ips": [{"address": "10.0.1.23/32", "gateway": "10.0.1.1", "interface": 1, "x-pool": "default"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1", "mtu": 1450, "advmss": 1410, "priority": 100, "table": 254, "scope": 0, "x-note": "dflt"}],
                "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc.cluster.local"], "options": ["ndots:5"], "x-extra": true},
                "cilium": {"endpointID": 1234, "identity": 56789}
            }),
        ]
    }

    #[test]
    fn foreign_results_parse_with_their_extra_keys() {
        let [calico, cilium] = foreign_results();
        let calico = PrevResult::parse(&calico).expect("calico");
        assert_eq!(
            calico.pod_ips(),
            vec![
                pod_ip(v4(192, 168, 129, 77), 32, None),
                pod_ip(v6("fd00:192:168:129::4d"), 128, None),
            ]
        );
        let cilium = PrevResult::parse(&cilium).expect("cilium");
        assert_eq!(
            cilium.pod_ips(),
            vec![pod_ip(v4(10, 0, 1, 23), 32, Some("eth0"))]
        );
        assert_eq!(
            cilium.routes[0],
            Route {
                dst: "0.0.0.0/0".parse().expect("prefix"),
                gw: Some(v4(10, 0, 1, 1)),
                mtu: Some(1450),
                advmss: Some(1410),
                priority: Some(100),
                table: Some(254),
                scope: Some(0),
            }
        );
        assert_eq!(cilium.dns.domain.as_deref(), Some("cluster.local"));
        assert_eq!(cilium.dns.options, ["ndots:5"]);
        assert_eq!(cilium.interfaces[1].pci_id.as_deref(), Some(""));
    }

    #[test]
    fn pass_through_keeps_everything_but_the_version() {
        let mut inputs = foreign_results().to_vec();
        inputs.extend([
            doc(BRIDGE_0_3_1),
            doc(BRIDGE_0_4_0),
            doc(BRIDGE_1_0_0),
            doc(HOST_LOCAL_1_0_0),
        ]);
        for prev in inputs {
            for version in CniVersion::SUPPORTED {
                let out = PrevResult::pass_through(&prev, version);
                let mut expected = prev.clone();
                expected["cniVersion"] = json!(version.as_str());
                assert_eq!(out, expected);
            }
        }
        // A result without cniVersion gets one.
        let out = PrevResult::pass_through(&json!({"ips": []}), CniVersion::V0_4_0);
        assert_eq!(out, json!({"cniVersion": "0.4.0", "ips": []}));
    }

    #[test]
    fn empty_and_sparse_results() {
        for prev in [
            json!({}),
            json!({"cniVersion": "1.1.0", "interfaces": null, "ips": null, "routes": null, "dns": null}),
            json!({"interfaces": [], "ips": [], "routes": [], "dns": {}}),
        ] {
            let result = PrevResult::parse(&prev).expect("valid");
            assert!(result.pod_ips().is_empty());
        }
    }

    #[test]
    fn malformed_results_are_code_6_naming_the_path() {
        let iface = json!([{"name": "eth0", "sandbox": "/ns"}]);
        let table = [
            (json!([]), "prevResult: expected an object, got an array"),
            (json!("x"), "prevResult: expected an object, got a string"),
            (json!({"cniVersion": 1}), "prevResult.cniVersion: expected a string, got 1"),
            (json!({"ips": {}}), "prevResult.ips: expected an array, got an object"),
            (json!({"ips": "10.0.0.1/24"}), "prevResult.ips: expected an array, got a string"),
            (json!({"interfaces": {}}), "prevResult.interfaces: expected an array, got an object"),
            (json!({"routes": 1}), "prevResult.routes: expected an array, got a number"),
            (json!({"dns": []}), "prevResult.dns: expected an object, got an array"),
            (json!({"ips": [1]}), "prevResult.ips[0]: expected an object, got a number"),
            (json!({"ips": [{}]}), "prevResult.ips[0].address: is missing"),
            (
                json!({"ips": [{"address": "10.0.0.1/24"}, {"address": "10.0.0.300/24"}]}),
                "prevResult.ips[1].address: \"10.0.0.300/24\" is not an IP prefix",
            ),
            (json!({"ips": [{"address": "10.0.0.1"}]}), "prevResult.ips[0].address: \"10.0.0.1\" is not an IP prefix"),
            (json!({"ips": [{"address": "10.0.0.1/33"}]}), "prevResult.ips[0].address: \"10.0.0.1/33\" is not an IP prefix"),
            (json!({"ips": [{"address": "fd00::1/129"}]}), "prevResult.ips[0].address: \"fd00::1/129\" is not an IP prefix"),
            (json!({"ips": [{"address": 167772161}]}), "prevResult.ips[0].address: expected an IP prefix string, got 167772161"),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "gateway": "10.0.0"}]}),
                "prevResult.ips[0].gateway: \"10.0.0\" is not an IP address",
            ),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "gateway": 1}]}),
                "prevResult.ips[0].gateway: expected an IP address string, got 1",
            ),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "interface": 0}]}),
                "prevResult.ips[0].interface: index 0 is out of range (the result has 0 interfaces)",
            ),
            (
                json!({"interfaces": iface, "ips": [{"address": "10.0.0.1/24", "interface": 1}]}),
                "prevResult.ips[0].interface: index 1 is out of range (the result has 1 interfaces)",
            ),
            (
                json!({"interfaces": iface, "ips": [{"address": "10.0.0.1/24", "interface": "0"}]}),
                "prevResult.ips[0].interface: \"0\" is not an index into interfaces",
            ),
            (
                json!({"interfaces": iface, "ips": [{"address": "10.0.0.1/24", "interface": -1}]}),
                "prevResult.ips[0].interface: -1 is not an index into interfaces",
            ),
            (
                json!({"interfaces": iface, "ips": [{"address": "10.0.0.1/24", "interface": 0.5}]}),
                "prevResult.ips[0].interface: 0.5 is not an index into interfaces",
            ),
            (
                json!({"ips": [{"version": "6", "address": "10.0.0.1/24"}]}),
                "prevResult.ips[0].version: \"6\" contradicts the IPv4 address 10.0.0.1/24",
            ),
            (
                json!({"ips": [{"version": "4", "address": "fd00::1/64"}]}),
                "prevResult.ips[0].version: \"4\" contradicts the IPv6 address fd00::1/64",
            ),
            (
                json!({"ips": [{"version": 4, "address": "10.0.0.1/24"}]}),
                "prevResult.ips[0].version: 4 is not \"4\" or \"6\"",
            ),
            (
                json!({"ips": [{"version": "5", "address": "10.0.0.1/24"}]}),
                "prevResult.ips[0].version: \"5\" is not \"4\" or \"6\"",
            ),
            (json!({"interfaces": [{}]}), "prevResult.interfaces[0].name: is missing"),
            (json!({"interfaces": ["eth0"]}), "prevResult.interfaces[0]: expected an object, got a string"),
            (
                json!({"interfaces": [{"name": "eth0", "sandbox": 3}]}),
                "prevResult.interfaces[0].sandbox: expected a string, got 3",
            ),
            (
                json!({"interfaces": [{"name": "eth0", "mtu": -1}]}),
                "prevResult.interfaces[0].mtu: -1 is not an unsigned 32-bit integer",
            ),
            (
                json!({"interfaces": [{"name": "eth0", "mtu": 4294967296u64}]}),
                "prevResult.interfaces[0].mtu: 4294967296 is not an unsigned 32-bit integer",
            ),
            (json!({"routes": [{}]}), "prevResult.routes[0].dst: is missing"),
            (
                json!({"routes": [{"dst": "0.0.0.0/0", "gw": "gw"}]}),
                "prevResult.routes[0].gw: \"gw\" is not an IP address",
            ),
            (
                json!({"routes": [{"dst": "default"}]}),
                "prevResult.routes[0].dst: \"default\" is not an IP prefix",
            ),
            (
                json!({"routes": [{"dst": "0.0.0.0/0", "table": "main"}]}),
                "prevResult.routes[0].table: \"main\" is not an unsigned 32-bit integer",
            ),
            (
                json!({"dns": {"nameservers": "10.96.0.10"}}),
                "prevResult.dns.nameservers: expected an array, got a string",
            ),
            (
                json!({"dns": {"search": ["a", 1]}}),
                "prevResult.dns.search[1]: expected a string, got 1",
            ),
            (json!({"dns": {"domain": []}}), "prevResult.dns.domain: expected a string, got []"),
        ];
        for (prev, message) in table {
            let err = PrevResult::parse(&prev).expect_err(message);
            assert_eq!(err.code, ErrorCode::Decode, "{message}");
            assert_eq!(err.msg, message);
        }
    }

    #[test]
    fn ip_prefix_syntax() {
        let valid = [
            ("10.22.0.5/16", v4(10, 22, 0, 5), 16),
            ("0.0.0.0/0", v4(0, 0, 0, 0), 0),
            ("255.255.255.255/32", v4(255, 255, 255, 255), 32),
            ("::/0", v6("::"), 0),
            ("fd00:10:22::4/64", v6("fd00:10:22::4"), 64),
            ("::ffff:10.0.0.1/128", v6("::ffff:10.0.0.1"), 128),
        ];
        for (text, address, prefix_len) in valid {
            let parsed: IpPrefix = text.parse().expect(text);
            assert_eq!(
                parsed,
                IpPrefix {
                    address,
                    prefix_len
                }
            );
            assert_eq!(parsed.to_string(), text);
        }
        let invalid = [
            "",
            "/",
            "10.0.0.1",
            "10.0.0.1/",
            "/24",
            "10.0.0.1/+24",
            "10.0.0.1/024",
            "10.0.0.1/00",
            "10.0.0.1/-1",
            "10.0.0.1/24/1",
            "10.0.0.1 /24",
            "10.0.0.1/ 24",
            "010.0.0.1/24",
            "10.0.0/24",
            "fe80::1%eth0/64",
            "fd00::1/300",
            "10.0.0.1/4294967320",
            "host/24",
        ];
        for text in invalid {
            assert_eq!(text.parse::<IpPrefix>(), Err(()), "{text:?}");
        }
    }
}

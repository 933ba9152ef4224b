//! Istio's sidecar capture as iptables rules: the oracle of the parity test.
//!
//! Generates what Istio's CNI plugin (and `istio-iptables` in an `istio-init`
//! container) programs into a sidecar pod in REDIRECT mode, from the same inputs
//! Istio reads: the pod's `traffic.sidecar.istio.io/*` annotations (with Istio's
//! defaults), the proxy's UID/GID, and the proxy's `ISTIO_META_DNS_CAPTURE` and
//! `ISTIO_DUAL_STACK`. Written from Istio's `tools/istio-iptables/pkg/capture/run.go`
//! and `cni/pkg/plugin/sidecar_redirect.go` (istio/istio master, commit 86c9f01): the chains, the order of
//! the rules and the quirks are Istio's, including the ones docs/istio-capture.md marks
//! as found by the differential test (see the notes on each step below).
//!
//! Not covered (no parity row needs them): TPROXY, exclude/reroute interfaces,
//! `INVALID_DROP`, owner-group filters, DNS capture of listed servers only.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::prereq;
use super::process::{Identity, Place, Spawn};

pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";

pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;
pub const TUNNEL_PORT: u16 = 15008;
pub const DNS_PORT: u16 = 15053;

/// The iptables flavour the twin uses. Debian 12's default; SO_ORIGINAL_DST comes
/// from conntrack and works with either flavour.
pub const IPTABLES_RESTORE: &str = "iptables-nft-restore";
pub const IP6TABLES_RESTORE: &str = "ip6tables-nft-restore";

/// What Istio reads for one sidecar pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSettings {
    /// The pod's `traffic.sidecar.istio.io/*` annotations, as written on the pod.
    pub annotations: BTreeMap<String, String>,
    /// The proxy's `runAsUser` / `runAsGroup` (Istio: 1337 when unset or 0).
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    /// `ISTIO_META_DNS_CAPTURE=true` in the proxy's environment.
    pub dns_capture: bool,
    /// `ISTIO_DUAL_STACK=true` in the proxy's environment.
    pub dual_stack: bool,
}

impl Default for SidecarSettings {
    fn default() -> Self {
        SidecarSettings {
            annotations: BTreeMap::new(),
            proxy_uid: 1337,
            proxy_gid: 1337,
            dns_capture: false,
            dual_stack: false,
        }
    }
}

impl SidecarSettings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// [`Self::annotation`] for each `(key, value)`.
    pub fn annotations(self, pairs: &[(&str, &str)]) -> Self {
        pairs.iter().fold(self, |settings, (key, value)| {
            settings.annotation(key, value)
        })
    }

    pub fn proxy(mut self, uid: u32, gid: u32) -> Self {
        self.proxy_uid = uid;
        self.proxy_gid = gid;
        self
    }

    pub fn dns_capture(mut self) -> Self {
        self.dns_capture = true;
        self
    }

    pub fn dual_stack(mut self) -> Self {
        self.dual_stack = true;
        self
    }

    /// The proxy's identity (both IDs); other processes of the pod are apps.
    pub fn proxy_identity(&self) -> Identity {
        Identity {
            uid: self.proxy_uid,
            gid: self.proxy_gid,
        }
    }
}

/// An annotation value Istio refuses (its CNI plugin then fails the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub annotation: String,
    pub value: String,
    pub problem: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.annotation, self.value, self.problem)
    }
}

/// Istio's rules for one pod, ready for `iptables-restore --noflush`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioRules {
    pub v4: String,
    /// ip6tables rules; None when Istio leaves IPv6 alone (see [`ipv6_enabled`]).
    pub v6: Option<String>,
}

impl IstioRules {
    /// Istio puts `::6/128` on `lo` whenever it programs IPv6 (Envoy's inbound
    /// passthrough binds it; IPv6 loopback is a /128, unlike 127.0.0.0/8).
    pub fn adds_passthrough_v6(&self) -> bool {
        self.v6.is_some()
    }
}

/// Istio's `getLocalIP`: IPv6 rules only when the pod's first address (in interface
/// order) is IPv6, or, with `ISTIO_DUAL_STACK`, when it has any IPv6 address. A
/// dual-stack pod without `ISTIO_DUAL_STACK` gets IPv4 rules only.
pub fn ipv6_enabled(settings: &SidecarSettings, pod_ips: &[IpAddr]) -> bool {
    let mut usable = pod_ips.iter().filter(|ip| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    });
    if settings.dual_stack {
        usable.any(IpAddr::is_ipv6)
    } else {
        usable.next().is_some_and(IpAddr::is_ipv6)
    }
}

/// Generates the rules for a pod with these addresses.
pub fn generate(settings: &SidecarSettings, pod_ips: &[IpAddr]) -> Result<IstioRules, RuleError> {
    let redirect = Redirect::from_settings(settings)?;
    let rules = redirect.rules();
    Ok(IstioRules {
        v4: restore_text(&rules, Family::V4),
        v6: ipv6_enabled(settings, pod_ips).then(|| restore_text(&rules, Family::V6)),
    })
}

/// Loads the rules into the netns of `place` (as root), and adds `::6` to `lo`
/// when Istio would. Panics with the tool's output on failure.
pub fn apply(place: &Place, rules: &IstioRules) {
    for tool in [IPTABLES_RESTORE, IP6TABLES_RESTORE] {
        assert!(
            prereq::system_tool(tool).is_some(),
            "{tool} is missing: the parity tests need iptables (`apt-get install iptables`, \
             or `sudo scripts/deps.sh`)"
        );
    }
    restore(place, IPTABLES_RESTORE, &rules.v4);
    if let Some(v6) = &rules.v6 {
        restore(place, IP6TABLES_RESTORE, v6);
    }
    if rules.adds_passthrough_v6() {
        let done = Spawn::new(place, "ip")
            .args(["-6", "addr", "add", "::6/128", "dev", "lo"])
            .run();
        assert!(
            done.success(),
            "ip -6 addr add ::6/128 dev lo in {}: {}",
            place.label,
            done.stderr
        );
    }
}

/// Loads one family's rules, then checks that the kernel holds exactly as many
/// rules as were written (the pod's netns starts empty).
fn restore(place: &Place, tool: &str, text: &str) {
    let done = Spawn::new(place, tool)
        .arg("--noflush")
        .stdin(text.as_bytes().to_vec())
        .run();
    assert!(
        done.success(),
        "{tool} in {} failed ({}): {}\ninput:\n{text}",
        place.label,
        done.status,
        done.stderr
    );
    let save = tool.replace("-restore", "-save");
    let saved = Spawn::new(place, &save).run();
    let rules = |text: &str| text.lines().filter(|l| l.starts_with("-A ")).count();
    assert_eq!(
        rules(&saved.stdout),
        rules(text),
        "{save} in {} shows other rules than were loaded:\n{}",
        place.label,
        saved.stdout
    );
}

// --- Istio's Redirect: annotations with defaults -------------------------------

/// IP ranges split by family, as Istio's `SeparateV4V6` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ranges {
    wildcard: bool,
    v4: Vec<String>,
    v6: Vec<String>,
    /// A range whose address is a loopback address (127.x.y.z, ::1).
    v4_loopback: bool,
    v6_loopback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Redirect {
    uid: String,
    gid: String,
    include_ranges: Ranges,
    exclude_ranges: Ranges,
    /// "*", "" (no inbound capture) or a list.
    include_inbound: String,
    exclude_inbound: Vec<String>,
    include_outbound_ports: Vec<String>,
    exclude_outbound_ports: Vec<String>,
    dns: bool,
}

impl Redirect {
    fn from_settings(settings: &SidecarSettings) -> Result<Self, RuleError> {
        let get = |key: &str, default: &str| {
            settings
                .annotations
                .get(key)
                .cloned()
                .unwrap_or_else(|| default.to_string())
        };
        let include_ranges = ranges(
            INCLUDE_OUTBOUND_IP_RANGES,
            &get(INCLUDE_OUTBOUND_IP_RANGES, "*"),
        )?;
        let exclude_ranges = ranges(
            EXCLUDE_OUTBOUND_IP_RANGES,
            &get(EXCLUDE_OUTBOUND_IP_RANGES, ""),
        )?;
        if exclude_ranges.wildcard {
            return Err(RuleError {
                annotation: EXCLUDE_OUTBOUND_IP_RANGES.to_string(),
                value: "*".to_string(),
                problem: "a wildcard cannot be excluded".to_string(),
            });
        }
        let include_inbound = get(INCLUDE_INBOUND_PORTS, "*").trim().to_string();
        if include_inbound != "*" {
            ports(INCLUDE_INBOUND_PORTS, &include_inbound)?;
        }
        // Istio always appends its status and metrics ports to the inbound
        // exclusions (which only matter with "*"), without duplicates.
        let mut exclude_inbound =
            ports(EXCLUDE_INBOUND_PORTS, &get(EXCLUDE_INBOUND_PORTS, "15020"))?;
        for port in ["15020", "15021", "15090"] {
            if !exclude_inbound.iter().any(|p| p == port) {
                exclude_inbound.push(port.to_string());
            }
        }
        Ok(Redirect {
            uid: settings.proxy_uid.to_string(),
            gid: settings.proxy_gid.to_string(),
            include_ranges,
            exclude_ranges,
            include_inbound,
            exclude_inbound,
            include_outbound_ports: ports(
                INCLUDE_OUTBOUND_PORTS,
                &get(INCLUDE_OUTBOUND_PORTS, ""),
            )?,
            // The status port is excluded only while the annotation is absent.
            exclude_outbound_ports: ports(
                EXCLUDE_OUTBOUND_PORTS,
                &get(EXCLUDE_OUTBOUND_PORTS, "15020"),
            )?,
            dns: settings.dns_capture,
        })
    }

    fn loopback_included(&self) -> bool {
        self.include_ranges.v4_loopback || self.include_ranges.v6_loopback
    }
}

/// A comma separated list, empty items dropped. Istio does not trim the items of
/// lists (its CNI plugin refuses a CIDR list with spaces); meshlane allows spaces,
/// so the generator trims them to compare like with like.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn ports(annotation: &str, value: &str) -> Result<Vec<String>, RuleError> {
    items(value)
        .map(|item| {
            item.parse::<u16>()
                .map(|port| port.to_string())
                .map_err(|err| RuleError {
                    annotation: annotation.to_string(),
                    value: value.to_string(),
                    problem: format!("{item:?} is not a port: {err}"),
                })
        })
        .collect()
}

fn ranges(annotation: &str, value: &str) -> Result<Ranges, RuleError> {
    if value.trim() == "*" {
        return Ok(Ranges {
            wildcard: true,
            ..Ranges::default()
        });
    }
    let mut out = Ranges::default();
    for item in items(value) {
        let bad = |problem: String| RuleError {
            annotation: annotation.to_string(),
            value: value.to_string(),
            problem,
        };
        let (addr, len) = item
            .split_once('/')
            .ok_or_else(|| bad(format!("{item:?} is not a CIDR")))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|err| bad(format!("{item:?} is not a CIDR: {err}")))?;
        let len: u8 = len
            .parse()
            .map_err(|err| bad(format!("{item:?} is not a CIDR: {err}")))?;
        if len > if addr.is_ipv4() { 32 } else { 128 } {
            return Err(bad(format!("{item:?}: prefix too long")));
        }
        match addr {
            IpAddr::V4(v4) => {
                out.v4_loopback |= v4.is_loopback();
                out.v4.push(item.to_string());
            }
            IpAddr::V6(v6) => {
                out.v6_loopback |= v6.is_loopback();
                out.v6.push(item.to_string());
            }
        }
    }
    Ok(out)
}

// --- the rules -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Which families a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Both,
    V4,
    V6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    only: Only,
    table: &'static str,
    chain: &'static str,
    params: String,
}

const ISTIO_INBOUND: &str = "ISTIO_INBOUND";
const ISTIO_REDIRECT: &str = "ISTIO_REDIRECT";
const ISTIO_IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
const ISTIO_OUTPUT: &str = "ISTIO_OUTPUT";
const ISTIO_OUTPUT_DNS: &str = "ISTIO_OUTPUT_DNS";
/// Chains and targets iptables has without `-N`.
const BUILT_IN: [&str; 8] = [
    "INPUT",
    "OUTPUT",
    "FORWARD",
    "PREROUTING",
    "POSTROUTING",
    "ACCEPT",
    "RETURN",
    "DROP",
];
/// Stands for the family's address in a rule written once for both families.
const PER_FAMILY: &str = "{ip}";

#[derive(Default)]
struct Rules(Vec<Rule>);

impl Rules {
    fn add(&mut self, only: Only, table: &'static str, chain: &'static str, params: String) {
        self.0.push(Rule {
            only,
            table,
            chain,
            params,
        });
    }

    fn both(&mut self, table: &'static str, chain: &'static str, params: String) {
        self.add(Only::Both, table, chain, params);
    }

    /// A nat rule per family, with `{ip}` replaced by `v4` or `v6`.
    fn per_family(&mut self, chain: &'static str, v4: &str, v6: &str, params: &str) {
        self.add(Only::V4, "nat", chain, params.replace(PER_FAMILY, v4));
        self.add(Only::V6, "nat", chain, params.replace(PER_FAMILY, v6));
    }
}

impl Redirect {
    /// Istio's `IptablesConfigurator::Run` for REDIRECT mode, step by step.
    fn rules(&self) -> Vec<Rule> {
        let mut r = Rules::default();
        let (nat, out) = ("nat", ISTIO_OUTPUT);

        // The tunnel port is never captured inbound, whatever the port lists say.
        r.both(
            nat,
            ISTIO_INBOUND,
            format!("-p tcp --dport {TUNNEL_PORT} -j RETURN"),
        );
        r.both(
            nat,
            ISTIO_REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {OUTBOUND_PORT}"),
        );
        r.both(
            nat,
            ISTIO_IN_REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {INBOUND_PORT}"),
        );

        // Inbound: "" captures nothing; "*" all but the exclusions; a list only
        // those ports (the exclusions, even Istio's own status ports, are ignored).
        if !self.include_inbound.is_empty() {
            r.both(nat, "PREROUTING", format!("-p tcp -j {ISTIO_INBOUND}"));
            if self.include_inbound == "*" {
                for port in &self.exclude_inbound {
                    r.both(
                        nat,
                        ISTIO_INBOUND,
                        format!("-p tcp --dport {port} -j RETURN"),
                    );
                }
                r.both(nat, ISTIO_INBOUND, format!("-p tcp -j {ISTIO_IN_REDIRECT}"));
            } else {
                for port in items(&self.include_inbound) {
                    r.both(
                        nat,
                        ISTIO_INBOUND,
                        format!("-p tcp --dport {port} -j {ISTIO_IN_REDIRECT}"),
                    );
                }
            }
        }

        r.both(nat, "OUTPUT", format!("-j {out}"));
        // Excluded ports first, for TCP and UDP: before anything else, even the
        // proxy's own loopback rules and DNS capture.
        for port in &self.exclude_outbound_ports {
            r.both(nat, out, format!("-p tcp --dport {port} -j RETURN"));
            r.both(nat, out, format!("-p udp --dport {port} -j RETURN"));
        }
        // Envoy's inbound passthrough calls the app from 127.0.0.6 / ::6.
        r.per_family(out, "127.0.0.6/32", "::6/128", "-o lo -s {ip} -j RETURN");

        // The UID rules, then the GID rules. A process that has only the proxy's
        // GID meets the UID's "-o lo ! --uid-owner ... -j RETURN" first: over
        // loopback it is an app, and the GID's 15006 rule only sees what that
        // RETURN lets through (TCP to port 53 when DNS is captured).
        for owner in [
            format!("--uid-owner {}", self.uid),
            format!("--gid-owner {}", self.gid),
        ] {
            let is_uid = owner.starts_with("--uid");
            // The proxy reaching the pod over loopback goes through 15006; with DNS
            // capture, the proxy's own TCP queries to a local resolver do not
            // (only in the UID rule: Istio leaves the GID rule as it is).
            let ports = if self.dns && is_uid {
                format!("-m multiport ! --dports 53,{TUNNEL_PORT}")
            } else {
                format!("! --dport {TUNNEL_PORT}")
            };
            r.per_family(
                out,
                "127.0.0.1/32",
                "::1/128",
                &format!(
                    "-o lo ! -d {{ip}} -p tcp {ports} -m owner {owner} -j {ISTIO_IN_REDIRECT}"
                ),
            );
            // Apps reaching the pod over loopback are left alone, unless a loopback
            // range is explicitly included (then they go on to the include rules).
            // With DNS capture, their TCP to port 53 goes on to the DNS rules.
            if !self.loopback_included() {
                let tcp_not_dns = if self.dns { "-p tcp ! --dport 53 " } else { "" };
                r.both(
                    nat,
                    out,
                    format!("-o lo {tcp_not_dns}-m owner ! {owner} -j RETURN"),
                );
            }
            // Everything else the proxy sends (any protocol) is its own business.
            r.both(nat, out, format!("-m owner {owner} -j RETURN"));
        }

        if self.dns {
            self.dns_rules(&mut r);
        }

        // Localhost, then the excluded ranges, then the included ports, then the
        // included ranges.
        r.per_family(out, "127.0.0.1/32", "::1/128", "-d {ip} -j RETURN");
        for cidr in &self.exclude_ranges.v4 {
            r.add(Only::V4, nat, out, format!("-d {cidr} -j RETURN"));
        }
        for cidr in &self.exclude_ranges.v6 {
            r.add(Only::V6, nat, out, format!("-d {cidr} -j RETURN"));
        }
        for port in &self.include_outbound_ports {
            r.both(
                nat,
                out,
                format!("-p tcp --dport {port} -j {ISTIO_REDIRECT}"),
            );
        }
        if self.include_ranges.wildcard {
            r.both(nat, out, format!("-j {ISTIO_REDIRECT}"));
        } else {
            for cidr in &self.include_ranges.v4 {
                r.add(Only::V4, nat, out, format!("-d {cidr} -j {ISTIO_REDIRECT}"));
            }
            for cidr in &self.include_ranges.v6 {
                r.add(Only::V6, nat, out, format!("-d {cidr} -j {ISTIO_REDIRECT}"));
            }
        }
        r.0
    }

    /// DNS capture as the CNI plugin asks for it (all servers): TCP and UDP to port
    /// 53 → 15053, and conntrack zones that keep the proxy's upstream queries apart
    /// from the apps' queries.
    fn dns_rules(&self, r: &mut Rules) {
        let (raw, dns_chain) = ("raw", ISTIO_OUTPUT_DNS);
        r.both(raw, "OUTPUT", format!("-j {dns_chain}"));
        r.both("nat", ISTIO_OUTPUT, format!("-j {dns_chain}"));
        r.both(
            "nat",
            dns_chain,
            format!("-p tcp --dport 53 -j REDIRECT --to-ports {DNS_PORT}"),
        );
        r.both(
            "nat",
            dns_chain,
            format!("-p udp --dport 53 -j REDIRECT --to-port {DNS_PORT}"),
        );
        for owner in [
            format!("--uid-owner {}", self.uid),
            format!("--gid-owner {}", self.gid),
        ] {
            r.both(
                raw,
                dns_chain,
                format!("-p udp --dport 53 -m owner {owner} -j CT --zone 1"),
            );
            r.both(
                raw,
                dns_chain,
                format!("-p udp --sport {DNS_PORT} -m owner {owner} -j CT --zone 2"),
            );
        }
        r.both(raw, "PREROUTING", format!("-j {ISTIO_INBOUND}"));
        r.both(
            raw,
            dns_chain,
            "-p udp --dport 53 -j CT --zone 2".to_string(),
        );
        r.both(
            raw,
            ISTIO_INBOUND,
            "-p udp --sport 53 -j CT --zone 1".to_string(),
        );
    }
}

/// `iptables-restore` input for one family: per table (alphabetical), the `-N` of
/// every chain its rules are in, then of every chain they jump to, then the rules
/// in the order they were added.
fn restore_text(rules: &[Rule], family: Family) -> String {
    let rules: Vec<&Rule> = rules
        .iter()
        .filter(|rule| match rule.only {
            Only::Both => true,
            Only::V4 => family == Family::V4,
            Only::V6 => family == Family::V6,
        })
        .collect();
    let mut tables: Vec<&str> = rules.iter().map(|rule| rule.table).collect();
    tables.sort_unstable();
    tables.dedup();
    let mut out = String::new();
    for table in tables {
        let in_table: Vec<&Rule> = rules.iter().copied().filter(|r| r.table == table).collect();
        let jump_targets = in_table.iter().filter_map(|rule| {
            let mut words = rule.params.split_whitespace().rev();
            let target = words.next()?;
            (words.next()? == "-j").then_some(target)
        });
        let mut chains: Vec<&str> = Vec::new();
        for chain in in_table.iter().map(|rule| rule.chain).chain(jump_targets) {
            if !BUILT_IN.contains(&chain) && !chains.contains(&chain) {
                chains.push(chain);
            }
        }
        out.push_str(&format!("*{table}\n"));
        for chain in chains {
            out.push_str(&format!("-N {chain}\n"));
        }
        for rule in in_table {
            out.push_str(&format!("-A {} {}\n", rule.chain, rule.params));
        }
        out.push_str("COMMIT\n");
    }
    out
}

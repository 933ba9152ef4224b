//! Where a socket operation lands: stand-in proxy listeners (15001, 15006, 15053;
//! Linkerd's 4140 and 4143)
//! that report the original destination they see, servers that report who they are,
//! and a batch of operations (TCP connect, connected UDP, unconnected UDP) run one by
//! one, each as its own user, with `probe.py landing-serve` / `landing-ops`.
//!
//! The same code runs against a pod captured by meshlane and against its twin
//! carrying Istio's iptables rules, so that the two can be compared row by row.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};

use super::prereq;
use super::process::{Identity, Place, Spawn, TestProcess};

/// The name the proxy stand-ins answer with; their port tells which listener.
pub const PROXY_NAME: &str = "proxy";
/// The stand-ins' TCP ports (outbound, inbound, DNS; Linkerd's outbound and
/// inbound) and UDP port (DNS).
pub const PROXY_TCP_PORTS: [u16; 5] = [15001, 15006, 15053, 4140, 4143];
pub const PROXY_UDP_PORTS: [u16; 1] = [15053];

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_TIMEOUT: Duration = Duration::from_secs(2);
const UDP_TIMEOUT: Duration = Duration::from_secs(1);

/// Servers on several TCP and UDP ports (IPv4 and IPv6) in one process, answering
/// with `name`; with `original_dst`, each TCP answer carries SO_ORIGINAL_DST.
pub fn start_servers(
    place: &Place,
    identity: Identity,
    name: &str,
    tcp: &[u16],
    udp: &[u16],
    original_dst: bool,
) -> TestProcess {
    let list = |ports: &[u16]| {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut spawn = Spawn::new(place, prereq::python())
        .arg(prereq::probe_script())
        .identity(identity)
        .args(["landing-serve", "--name", name])
        .args(["--tcp", &list(tcp), "--udp", &list(udp)]);
    if original_dst {
        spawn = spawn.arg("--original-dst");
    }
    let mut process = spawn.spawn();
    process.wait_for_line("READY", READY_TIMEOUT);
    process
}

/// The proxy's listeners as stand-ins, run as the proxy's user.
pub fn start_proxy_standins(place: &Place, proxy: Identity) -> TestProcess {
    start_servers(
        place,
        proxy,
        PROXY_NAME,
        &PROXY_TCP_PORTS,
        &PROXY_UDP_PORTS,
        true,
    )
}

/// The kind of socket operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    /// `connect()` then `send()` (glibc's resolver).
    UdpConnected,
    /// `sendto()` on an unconnected socket.
    UdpSendto,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::UdpConnected => "udp-conn",
            Proto::UdpSendto => "udp-sendto",
        }
    }
}

/// One operation with concrete addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub proto: Proto,
    pub to: SocketAddr,
    /// An AF_INET6 socket with IPV6_V6ONLY off, to `::ffff:<to>` (`to` is IPv4).
    pub mapped: bool,
    /// Source address bound before connecting.
    pub bind: Option<IpAddr>,
    pub identity: Identity,
}

impl Operation {
    fn to_json(&self) -> Value {
        let (proto, udp) = match self.proto {
            Proto::Tcp => ("tcp", None),
            Proto::UdpConnected => ("udp", Some("connected")),
            Proto::UdpSendto => ("udp", Some("sendto")),
        };
        let timeout = match self.proto {
            Proto::Tcp => TCP_TIMEOUT,
            _ => UDP_TIMEOUT,
        };
        json!({
            "proto": proto,
            "udp": udp,
            "to": self.to.to_string(),
            "family": if self.mapped { Some("mapped") } else { None },
            "bind": self.bind.map(|ip| ip.to_string()),
            "uid": self.identity.uid,
            "gid": self.identity.gid,
            "timeout": timeout.as_secs_f64(),
        })
    }

    fn time_limit(&self) -> Duration {
        match self.proto {
            Proto::Tcp => TCP_TIMEOUT,
            _ => UDP_TIMEOUT,
        }
    }
}

/// Runs the operations one after the other at `place` (each in its own child as its
/// own user) and returns what each saw, in order.
pub fn run_operations(place: &Place, ops: &[Operation]) -> Vec<Observed> {
    if ops.is_empty() {
        return Vec::new();
    }
    let input = Value::Array(ops.iter().map(Operation::to_json).collect()).to_string();
    let limit: Duration = ops
        .iter()
        .map(|op| op.time_limit() + Duration::from_millis(200))
        .sum::<Duration>()
        + Duration::from_secs(30);
    let finished = Spawn::new(place, prereq::python())
        .arg(prereq::probe_script())
        .arg("landing-ops")
        .stdin(input.into_bytes())
        .timeout(limit)
        .run();
    let line = finished.stdout.lines().last().unwrap_or_default();
    let parsed: Value = serde_json::from_str(line).unwrap_or_else(|err| {
        panic!(
            "landing-ops at {} printed no JSON ({err}); status {}\nstdout: {}\nstderr: {}",
            place.label, finished.status, finished.stdout, finished.stderr
        )
    });
    let results = parsed["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        results.len(),
        ops.len(),
        "landing-ops at {} answered {} of {} operations: {}",
        place.label,
        results.len(),
        ops.len(),
        finished.stderr
    );
    results.iter().map(Observed::from_json).collect()
}

/// Where an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// A proxy stand-in on this port; for TCP, the SO_ORIGINAL_DST it read.
    Proxy {
        port: u16,
        original_dst: Option<String>,
    },
    /// A server reached directly: its name and the local address it answered on.
    Direct {
        server: String,
        local: String,
    },
    Refused,
    Timeout,
    /// Any other error (its errno name), or an answer that makes no sense.
    Failed(String),
}

/// What one operation saw: where it landed, and what the socket reported about its
/// peer (`getpeername` after connect, the source of a UDP reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub landing: Landing,
    pub peer: Option<String>,
    pub reply_from: Option<String>,
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

impl Observed {
    fn from_json(raw: &Value) -> Observed {
        let reply = &raw["reply"];
        let landing = if raw["ok"].as_bool() == Some(true) {
            let name = text(&reply["name"]).unwrap_or_default();
            match (name.as_str(), reply["port"].as_u64()) {
                (PROXY_NAME, Some(port)) => Landing::Proxy {
                    port: port as u16,
                    original_dst: text(&reply["original_dst"]),
                },
                (_, Some(_)) if !name.is_empty() => Landing::Direct {
                    server: name,
                    local: text(&reply["local"]).unwrap_or_default(),
                },
                _ => Landing::Failed(format!("odd reply {reply}")),
            }
        } else {
            let error = text(&raw["error"]).unwrap_or_default();
            // "ENAME: description": the errno name is enough, and stable.
            let errno = error.split_once(':').map(|(name, _)| name).filter(|name| {
                name.starts_with('E') && name.chars().all(|c| c.is_ascii_uppercase())
            });
            match errno {
                Some("ECONNREFUSED") => Landing::Refused,
                Some(name) => Landing::Failed(name.to_string()),
                None if error == "timeout" => Landing::Timeout,
                None => Landing::Failed(error),
            }
        };
        Observed {
            landing,
            peer: text(&raw["peer"]),
            reply_from: text(&raw["from"]),
        }
    }

    /// The same observation with addresses replaced by names (a pod's own IP is
    /// not the same in two twins).
    pub fn labelled(&self, labels: &AddressLabels) -> Observed {
        let landing = match &self.landing {
            Landing::Proxy { port, original_dst } => Landing::Proxy {
                port: *port,
                original_dst: original_dst.as_deref().map(|a| labels.addr(a)),
            },
            Landing::Direct { server, local } => Landing::Direct {
                server: server.clone(),
                local: labels.addr(local),
            },
            other => other.clone(),
        };
        Observed {
            landing,
            peer: self.peer.as_deref().map(|a| labels.addr(a)),
            reply_from: self.reply_from.as_deref().map(|a| labels.addr(a)),
        }
    }

    /// One cell of the table; `asked` is the (labelled) destination: the peer and
    /// the reply's source are shown only when they differ from it.
    pub fn describe(&self, asked: &str) -> String {
        let mut out = match &self.landing {
            Landing::Proxy { port, original_dst } => {
                let listener = match port {
                    15001 => "outbound(15001)".to_string(),
                    15006 => "inbound(15006)".to_string(),
                    15053 => "dns(15053)".to_string(),
                    4140 => "outbound(4140)".to_string(),
                    4143 => "inbound(4143)".to_string(),
                    other => format!("proxy({other})"),
                };
                match original_dst {
                    Some(dst) => format!("{listener} od={dst}"),
                    None => listener,
                }
            }
            Landing::Direct { server, local } => format!("direct({server} {local})"),
            Landing::Refused => "refused".to_string(),
            Landing::Timeout => "timeout".to_string(),
            Landing::Failed(error) => format!("error({error})"),
        };
        for (what, value) in [("peer", &self.peer), ("from", &self.reply_from)] {
            if let Some(value) = value {
                if value != asked {
                    out.push_str(&format!(" {what}={value}"));
                }
            }
        }
        out
    }
}

/// Names for addresses, so that observations in two pods compare equal.
#[derive(Debug, Clone, Default)]
pub struct AddressLabels(BTreeMap<IpAddr, String>);

impl AddressLabels {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, ip: impl Into<IpAddr>, label: &str) -> Self {
        self.0.insert(ip.into(), label.to_string());
        self
    }

    /// "ip:port" / "[ip6]:port" with a known address replaced by its label;
    /// anything else unchanged.
    pub fn addr(&self, text: &str) -> String {
        let Ok(addr) = text.parse::<SocketAddr>() else {
            return text.to_string();
        };
        let port = addr.port();
        match addr.ip() {
            IpAddr::V4(v4) => match self.0.get(&IpAddr::V4(v4)) {
                Some(label) => format!("{label}:{port}"),
                None => text.to_string(),
            },
            IpAddr::V6(v6) => {
                if let Some(label) = v6.to_ipv4_mapped().and_then(|v4| self.0.get(&v4.into())) {
                    format!("[::ffff:{label}]:{port}")
                } else if let Some(label) = self.0.get(&IpAddr::V6(v6)) {
                    format!("[{label}]:{port}")
                } else {
                    text.to_string()
                }
            }
        }
    }
}

//! Typed wrappers around `tests/tools/probe.py`, run at a [`Place`] (a pod or the
//! node) through the process spawner.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::prereq;
use super::process::{Identity, Place, Spawn, TestProcess};

const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

fn probe(place: &Place, identity: Identity) -> Spawn {
    Spawn::new(place, prereq::python())
        .arg(prereq::probe_script())
        .identity(identity)
}

/// Runs a probe command to completion and parses its single JSON line.
fn run_json(spawn: Spawn) -> Value {
    let finished = spawn.run();
    let line = finished.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|err| {
        panic!(
            "probe printed no JSON ({err}); status {}\nstdout: {}\nstderr: {}",
            finished.status, finished.stdout, finished.stderr
        )
    })
}

fn string_field(json: &Value, key: &str) -> Option<String> {
    json.get(key)?.as_str().map(str::to_string)
}

fn addr_field(json: &Value, key: &str) -> Option<SocketAddr> {
    string_field(json, key)?.parse().ok()
}

/// `probe.py serve`: one JSON line per connection; killed on drop.
#[derive(Debug)]
pub struct ProbeServer {
    pub process: TestProcess,
    pub port: u16,
    pub name: String,
}

impl ProbeServer {
    /// Listens on `[::]:port` (IPv4 and IPv6) as root; waits for READY.
    pub fn start(place: &Place, port: u16, name: &str) -> ProbeServer {
        ProbeServer::start_with(place, port, name, "::", Identity::ROOT)
    }

    pub fn start_with(
        place: &Place,
        port: u16,
        name: &str,
        host: &str,
        identity: Identity,
    ) -> ProbeServer {
        ProbeServer::start_args(place, port, name, host, identity, &[])
    }

    /// A stand-in for a proxy listener on `host:port`: runs as the proxy and
    /// answers each connection with the `SO_ORIGINAL_DST` it reads (`original_dst`
    /// in the reply). Started by [`ProxyStandIn::start`].
    pub fn original_dst<'p>(
        place: &'p Place,
        host: &'p str,
        port: u16,
        name: &'p str,
    ) -> ProxyStandIn<'p> {
        ProxyStandIn {
            place,
            host,
            port,
            name,
            flags: vec!["--original-dst".to_string()],
        }
    }

    fn start_args(
        place: &Place,
        port: u16,
        name: &str,
        host: &str,
        identity: Identity,
        extra: &[&str],
    ) -> ProbeServer {
        let mut process = probe(place, identity)
            .args([
                "serve",
                "--port",
                &port.to_string(),
                "--host",
                host,
                "--name",
                name,
            ])
            .args(extra.iter().copied())
            .spawn();
        process.wait_for_line("READY", SERVER_READY_TIMEOUT);
        ProbeServer {
            process,
            port,
            name: name.to_string(),
        }
    }
}

/// A proxy listener stand-in being set up ([`ProbeServer::original_dst`]).
pub struct ProxyStandIn<'p> {
    place: &'p Place,
    host: &'p str,
    port: u16,
    name: &'p str,
    flags: Vec<String>,
}

impl ProxyStandIn<'_> {
    /// Answers each connection only after `delay`.
    pub fn answer_after(mut self, delay: Duration) -> Self {
        self.flags.push("--answer-after".to_string());
        self.flags.push(delay.as_secs_f64().to_string());
        self
    }

    /// A busy proxy: accepts only after `delay` (connections complete in the
    /// backlog meanwhile), then prints each answer as an `ANSWER {json}` line of
    /// its output.
    pub fn accept_after(mut self, delay: Duration) -> Self {
        self.flags.push("--accept-after".to_string());
        self.flags.push(delay.as_secs_f64().to_string());
        self
    }

    /// One worker's listener: `SO_REUSEPORT` on `host:port`.
    pub fn reuseport(mut self) -> Self {
        self.flags.push("--reuseport".to_string());
        self
    }

    pub fn start(self) -> ProbeServer {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        ProbeServer::start_args(
            self.place,
            self.port,
            self.name,
            self.host,
            Identity::PROXY,
            &flags,
        )
    }
}

/// What `serve` answered: who it is and the connection as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub name: String,
    /// The client as seen by the server (IPv4-mapped addresses shown as IPv4).
    pub peer: SocketAddr,
    /// The server's local address of the connection.
    pub local: SocketAddr,
    pub got: String,
    /// With `--original-dst`: the address SO_ORIGINAL_DST gave, or "error: ...".
    pub original_dst: Option<String>,
}

impl ServerReply {
    pub fn parse(json: &Value) -> Option<Self> {
        Some(ServerReply {
            name: string_field(json, "name")?,
            peer: addr_field(json, "peer")?,
            local: addr_field(json, "local")?,
            got: string_field(json, "got")?,
            original_dst: string_field(json, "original_dst"),
        })
    }
}

/// Address family of a `connect` probe's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    /// AF_INET6 with IPV6_V6ONLY off, to `::ffff:a.b.c.d`.
    Mapped,
}

/// `probe.py connect`, built then run at a place.
#[derive(Debug, Clone)]
pub struct Connect {
    to: String,
    send: String,
    bind: Option<String>,
    family: Option<Family>,
    identity: Identity,
    timeout_secs: f64,
    hold: Duration,
    close_at_once: bool,
}

/// The outcome of a connect probe.
#[derive(Debug, Clone)]
pub struct ConnectOutcome {
    pub ok: bool,
    pub reply: Option<ServerReply>,
    /// The client socket's local and peer addresses (the peer as `getpeername`
    /// reports it, which a connect-time rewrite may change).
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub error: Option<String>,
    pub raw: Value,
}

impl ConnectOutcome {
    /// The server's reply; panics with the whole outcome when there is none.
    pub fn expect_reply(&self) -> ServerReply {
        self.reply
            .clone()
            .unwrap_or_else(|| panic!("no reply: {self:?}"))
    }
}

impl Connect {
    /// `to` is "ip:port" or "[ip6]:port".
    pub fn to(to: impl ToString) -> Self {
        Connect {
            to: to.to_string(),
            send: "hello".to_string(),
            bind: None,
            family: None,
            identity: Identity::ROOT,
            timeout_secs: 5.0,
            hold: Duration::ZERO,
            close_at_once: false,
        }
    }

    /// Keeps the connection open this long after the reply.
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Sends and closes at once, without waiting for a reply (fire and forget).
    pub fn close_at_once(mut self) -> Self {
        self.close_at_once = true;
        self
    }

    pub fn send(mut self, text: &str) -> Self {
        self.send = text.to_string();
        self
    }

    /// Source address ("ip", "ip:port" or "[ip6]:port").
    pub fn bind(mut self, addr: impl ToString) -> Self {
        self.bind = Some(addr.to_string());
        self
    }

    pub fn family(mut self, family: Family) -> Self {
        self.family = Some(family);
        self
    }

    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_secs = timeout.as_secs_f64();
        self
    }

    pub fn run(&self, place: &Place) -> ConnectOutcome {
        let mut spawn = probe(place, self.identity).args([
            "connect",
            "--to",
            &self.to,
            "--send",
            &self.send,
            "--timeout",
            &self.timeout_secs.to_string(),
        ]);
        if let Some(bind) = &self.bind {
            spawn = spawn.args(["--bind", bind]);
        }
        if !self.hold.is_zero() {
            spawn = spawn.args(["--hold", &self.hold.as_secs_f64().to_string()]);
        }
        if self.close_at_once {
            spawn = spawn.arg("--close-at-once");
        }
        if let Some(family) = self.family {
            let name = match family {
                Family::V4 => "4",
                Family::V6 => "6",
                Family::Mapped => "mapped",
            };
            spawn = spawn.args(["--family", name]);
        }
        let limit = self.timeout_secs + self.hold.as_secs_f64() + 10.0;
        let raw = run_json(spawn.timeout(Duration::from_secs_f64(limit)));
        ConnectOutcome {
            ok: raw["ok"].as_bool().unwrap_or(false),
            reply: ServerReply::parse(&raw["reply"]),
            local: addr_field(&raw, "local"),
            peer: addr_field(&raw, "peer"),
            error: string_field(&raw, "error"),
            raw,
        }
    }

    /// Runs and panics unless `server` answered, having got what was sent; the
    /// outcome and its reply, for further checks.
    pub fn expect_reply_from(&self, place: &Place, server: &str) -> (ConnectOutcome, ServerReply) {
        let outcome = self.run(place);
        let reply = outcome.expect_reply();
        assert_eq!(
            (reply.name.as_str(), reply.got.as_str()),
            (server, self.send.as_str()),
            "connect from {} to {}",
            place.label,
            self.to
        );
        (outcome, reply)
    }

    /// Runs and panics unless the server answered.
    pub fn expect_reply(&self, place: &Place) -> ServerReply {
        let outcome = self.run(place);
        outcome.reply.unwrap_or_else(|| {
            panic!(
                "connect from {} to {} got no reply: {}",
                place.label, self.to, outcome.raw
            )
        })
    }
}

/// `probe.py istio-validation`: Istio's start-up check of the capture.
#[derive(Debug, Clone)]
pub struct ValidationOutcome {
    pub ok: bool,
    /// 15001 or 15006: the listener that got the connection.
    pub listener: Option<u16>,
    pub original_dst: Option<SocketAddr>,
    pub error: Option<String>,
    pub raw: Value,
}

/// Runs Istio's check as its init container does: as the proxy user (1337).
pub fn istio_validation(place: &Place, ipv6: bool) -> ValidationOutcome {
    validation(place, Identity::PROXY, ipv6, &[])
}

/// Runs Kuma's `kuma-validation` check as the injector runs it, as kuma-dp's user
/// and group: a server on the inbound port only, and a connection to
/// 127.0.0.6 / ::6 on `to_port` (Kuma picks one in 20000–29999) that must reach it
/// (docs/meshes.md, "The CNI-mode validation container").
pub fn kuma_validation(
    place: &Place,
    kuma_dp: Identity,
    ipv6: bool,
    to_port: u16,
) -> ValidationOutcome {
    let to_port = to_port.to_string();
    let args = ["--listen-ports", "15006", "--to-port", to_port.as_str()];
    validation(place, kuma_dp, ipv6, &args)
}

/// `probe.py linkerd-network-validator`: Linkerd's `linkerd-network-validator`
/// init container as its chart runs it, as 65534:65534 (docs/meshes.md, "The
/// validation container"): a server on `listen` hands a token to a client that
/// connected to `connect`. `None` when it passed, else why not.
pub fn linkerd_network_validator(place: &Place, listen: &str, connect: &str) -> Option<String> {
    let nobody = Identity {
        uid: 65534,
        gid: 65534,
    };
    let raw = run_json(probe(place, nobody).args([
        "linkerd-network-validator",
        "--listen",
        listen,
        "--connect",
        connect,
    ]));
    match raw["ok"].as_bool() {
        Some(true) => None,
        _ => Some(raw.to_string()),
    }
}

fn validation(place: &Place, identity: Identity, ipv6: bool, args: &[&str]) -> ValidationOutcome {
    let mut spawn = probe(place, identity)
        .arg("istio-validation")
        .args(args.iter().copied());
    if ipv6 {
        spawn = spawn.arg("--ipv6");
    }
    let raw = run_json(spawn);
    ValidationOutcome {
        ok: raw["ok"].as_bool().unwrap_or(false),
        listener: raw["listener"].as_u64().map(|p| p as u16),
        original_dst: addr_field(&raw, "original_dst"),
        error: string_field(&raw, "error"),
        raw,
    }
}

/// `probe.py getsockopt-passthrough`: each check is an object with an `ok` field.
#[derive(Debug, Clone)]
pub struct PassthroughReport {
    pub ok: bool,
    pub raw: Value,
}

impl PassthroughReport {
    /// Names of the checks that failed.
    pub fn failures(&self) -> Vec<String> {
        self.raw
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.is_object() && v["ok"] != Value::Bool(true))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
    }
}

/// Runs as root: the iptables checks need CAP_NET_ADMIN / CAP_NET_RAW.
pub fn getsockopt_passthrough(place: &Place) -> PassthroughReport {
    let raw = run_json(probe(place, Identity::ROOT).arg("getsockopt-passthrough"));
    PassthroughReport {
        ok: raw["ok"].as_bool().unwrap_or(false),
        raw,
    }
}

//! `tests/tools/connect_variants.c`: TCP clients that connect other ways than a
//! plain connect(2) (TCP Fast Open, MPTCP, io_uring, a retried non-blocking connect,
//! a second connect on one socket). Built with gcc into the node's temp dir on first
//! use, run at a [`Place`] like the probes.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use super::c_tool;
use super::probe::ServerReply;
use super::process::{Identity, Place, Spawn};

/// One connection's outcome as the tool prints it.
#[derive(Debug, Clone)]
pub struct VariantOutcome {
    pub ok: bool,
    /// The server's JSON line, parsed (tests/tools/probe.py serve).
    pub reply: Option<ServerReply>,
    /// getpeername's answer, which meshlane restores to the original destination.
    pub peer: Option<SocketAddr>,
    pub error: Option<String>,
    pub raw: Value,
}

impl VariantOutcome {
    fn parse(json: &Value) -> Self {
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_string);
        let reply = text("reply")
            .and_then(|line| serde_json::from_str::<Value>(&line).ok())
            .and_then(|reply| ServerReply::parse(&reply));
        VariantOutcome {
            ok: json.get("ok").and_then(Value::as_bool).unwrap_or(false),
            reply,
            peer: text("peer").and_then(|peer| peer.parse().ok()),
            error: text("error"),
            raw: json.clone(),
        }
    }

    /// The server's reply; panics with the whole outcome when there is none.
    pub fn expect_reply(&self) -> ServerReply {
        self.reply
            .clone()
            .unwrap_or_else(|| panic!("no reply: {}", self.raw))
    }
}

fn run(place: &Place, identity: Identity, args: &[&str]) -> Value {
    let program: &Path = &c_tool::build(&place.work_dir, "connect_variants.c", "connect-variants");
    let finished = Spawn::new(place, program)
        .args(args.iter().copied())
        .identity(identity)
        .run();
    let line = finished.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|err| {
        panic!(
            "connect-variants printed no JSON ({err}); status {}\nstdout: {}\nstderr: {}",
            finished.status, finished.stdout, finished.stderr
        )
    })
}

/// One connection made the `variant` way (plain, tfo-sendto, tfo-connect, mptcp,
/// io-uring, nonblock-retry), sending `text`.
pub fn connect(
    place: &Place,
    identity: Identity,
    variant: &str,
    to: SocketAddr,
    text: &str,
) -> VariantOutcome {
    let to = to.to_string();
    VariantOutcome::parse(&run(
        place,
        identity,
        &[variant, "--to", &to, "--send", text],
    ))
}

/// Two connects on one socket (`reconnect`: the first exchanged then disconnected
/// with AF_UNSPEC; `refused-then`: the first failed): both outcomes.
pub fn connect_twice(
    place: &Place,
    identity: Identity,
    variant: &str,
    first: SocketAddr,
    then: SocketAddr,
    text: &str,
) -> (VariantOutcome, VariantOutcome) {
    let (first, then) = (first.to_string(), then.to_string());
    let json = run(
        place,
        identity,
        &[variant, "--to", &first, "--then", &then, "--send", text],
    );
    (
        VariantOutcome::parse(&json["first"]),
        VariantOutcome::parse(&json["second"]),
    )
}

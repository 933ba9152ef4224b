//! `tests/tools/connect_variants.c`: TCP clients that connect other ways than a
//! plain connect(2) (TCP Fast Open, MPTCP, io_uring, a retried non-blocking connect,
//! a second connect on one socket). Built with gcc into the node's temp dir on first
//! use, run at a [`Place`] like the probes.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use super::c_tool;
use super::probe::{ConnectOutcome, ServerReply};
use super::process::{Identity, Place, Spawn};

/// One connection's outcome as the tool prints it: what the probe's connect
/// reports, the server's line given as text.
fn parse(json: &Value) -> ConnectOutcome {
    let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_string);
    let reply = text("reply")
        .and_then(|line| serde_json::from_str::<Value>(&line).ok())
        .and_then(|reply| ServerReply::parse(&reply));
    ConnectOutcome {
        ok: json.get("ok").and_then(Value::as_bool).unwrap_or(false),
        reply,
        local: text("local").and_then(|local| local.parse().ok()),
        peer: text("peer").and_then(|peer| peer.parse().ok()),
        error: text("error"),
        raw: json.clone(),
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
) -> ConnectOutcome {
    let to = to.to_string();
    parse(&run(
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
) -> (ConnectOutcome, ConnectOutcome) {
    let (first, then) = (first.to_string(), then.to_string());
    let json = run(
        place,
        identity,
        &[variant, "--to", &first, "--then", &then, "--send", text],
    );
    (parse(&json["first"]), parse(&json["second"]))
}

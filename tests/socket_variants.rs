//! The ways a TCP client connects besides a plain connect(2) — TCP Fast Open (both
//! APIs), MPTCP, io_uring, a non-blocking connect retried, a second connect on one
//! socket — in a captured pod with the real programs attached. A proxy stand-in on
//! 127.0.0.1:15001 answers each connection with the SO_ORIGINAL_DST it reads, and the
//! real server answers under its own name: a connection that escapes its sidecar
//! shows as the server's name. docs/reliability.md ("Socket variants") has the results
//! per kernel.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::connect_variants::{connect, connect_twice};
use common::probe::ConnectOutcome;
use common::{Identity, Pod, PodOptions, ProbeServer, TestNode};

const SERVER_PORT: u16 = 8080;
const OTHER_PORT: u16 = 8081;
const EXCLUDED_PORT: u16 = 9090;

/// TCP Fast Open for real inside the pod: the client puts its data in the SYN without
/// a cookie (0x4), the server takes it without TCP_FASTOPEN on its socket (0x400) or a
/// cookie (0x200); 0x1 and 0x2 turn the client and server sides on.
const TFO_EVERYWHERE: &str = "1543";

fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn proxy_stand_in(pod: &Pod) -> ProbeServer {
    ProbeServer::original_dst(&pod.place(), "127.0.0.1", 15001, "proxy").start()
}

/// The connection went through the proxy stand-in, which read `destination` as its
/// original destination, and the app's getpeername shows `destination`.
fn went_through_proxy(outcome: &ConnectOutcome, destination: SocketAddr, text: &str) -> bool {
    outcome.reply.as_ref().is_some_and(|reply| {
        reply.name == "proxy"
            && reply.got == text
            && reply.original_dst.as_deref() == Some(destination.to_string().as_str())
    }) && outcome.peer == Some(destination)
}

/// One of the pod's TcpExt counters (/proc/net/netstat is per netns).
fn tcp_ext(pod: &Pod, name: &str) -> u64 {
    let finished = pod.command("cat").arg("/proc/net/netstat").run();
    let lines: Vec<&str> = finished
        .stdout
        .lines()
        .filter(|line| line.starts_with("TcpExt:"))
        .collect();
    let (names, values) = match lines.as_slice() {
        [names, values] => (names, values),
        _ => panic!("no TcpExt in /proc/net/netstat: {}", finished.stdout),
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no TcpExt counter {name}"))
}

#[test]
fn every_connect_variant_reaches_the_sidecar_with_its_destination() {
    let node = TestNode::new("variants");
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new());
    // Before the proxy listens: a listener takes Fast Open when it starts listening.
    a.sysctl("net.ipv4.tcp_fastopen", TFO_EVERYWHERE);
    a.sysctl("net.mptcp.enabled", "1");
    let _proxy = proxy_stand_in(&a);
    let _server = ProbeServer::start(&b.place(), SERVER_PORT, "b");
    let destination = addr(b.ipv4(), SERVER_PORT);

    let tfo_before = tcp_ext(&a, "TCPFastOpenActive");
    let mut escaped = Vec::new();
    for variant in [
        "plain",
        "tfo-sendto",
        "tfo-connect",
        // The hooks see MPTCP's first subflow, a TCP socket; the record is copied
        // to the MPTCP socket, which the app's getpeername asks.
        "mptcp",
        "io-uring",
        "nonblock-retry",
    ] {
        let text = format!("via-{variant}");
        let outcome = connect(&a.place(), Identity::APP, variant, destination, &text);
        if !went_through_proxy(&outcome, destination, &text) {
            escaped.push(format!("{variant}: {}", outcome.raw));
        }
    }
    assert!(escaped.is_empty(), "not captured: {escaped:#?}");

    // Both Fast Open variants put their data in the SYN, not after the handshake.
    let tfo_syns = tcp_ext(&a, "TCPFastOpenActive") - tfo_before;
    assert_eq!(tfo_syns, 2, "Fast Open SYNs with data sent");
    // One original-destination record published per redirected connect.
    assert_eq!(node.counter("conn_published"), 6);
}

#[test]
fn a_second_connect_on_one_socket_keeps_no_record_of_the_first() {
    let node = TestNode::new("reconnect");
    let a = node.add_pod(
        "a",
        PodOptions::new().injected().annotation(
            "traffic.sidecar.istio.io/excludeOutboundPorts",
            &EXCLUDED_PORT.to_string(),
        ),
    );
    let b = node.add_pod("b", PodOptions::new());
    let _servers: Vec<ProbeServer> = [
        (SERVER_PORT, "b"),
        (OTHER_PORT, "b-other"),
        (EXCLUDED_PORT, "b-excluded"),
    ]
    .into_iter()
    .map(|(port, name)| ProbeServer::start(&b.place(), port, name))
    .collect();
    let captured = addr(b.ipv4(), SERVER_PORT);
    let other = addr(b.ipv4(), OTHER_PORT);
    let excluded = addr(b.ipv4(), EXCLUDED_PORT);

    // Every step runs and every deviation is listed: kernels differ here.
    let mut wrong = Vec::new();

    // No proxy yet: the captured connect is refused at 127.0.0.1:15001. The same
    // socket then connects to an excluded port, which must go there untouched.
    let (refused, direct) = connect_twice(
        &a.place(),
        Identity::APP,
        "refused-then",
        captured,
        excluded,
        "after-refusal",
    );
    if refused.error.as_deref() != Some("ECONNREFUSED") {
        wrong.push(format!(
            "the first connect was not refused: {}",
            refused.raw
        ));
    }
    if direct.reply.as_ref().map(|r| r.name.as_str()) != Some("b-excluded")
        || direct.peer != Some(excluded)
    {
        wrong.push(format!(
            "after a refused connect, the untouched one is not itself: {}",
            direct.raw
        ));
    }

    let _proxy = proxy_stand_in(&a);
    let published = node.counter("conn_published");
    // Captured, disconnected (AF_UNSPEC), then an excluded port: untouched.
    let (first, second) = connect_twice(
        &a.place(),
        Identity::APP,
        "reconnect",
        captured,
        excluded,
        "again",
    );
    if !went_through_proxy(&first, captured, "again") {
        wrong.push(format!("the first connect was not captured: {}", first.raw));
    }
    if second.reply.as_ref().map(|r| r.name.as_str()) != Some("b-excluded")
        || second.peer != Some(excluded)
    {
        wrong.push(format!(
            "after a disconnect, the untouched connect is not itself: {}",
            second.raw
        ));
    }
    let published = node.counter("conn_published") - published;
    if published != 1 {
        wrong.push(format!(
            "{published} records published for one captured connect and one untouched"
        ));
    }

    // Captured twice: each connect gets its own destination.
    let (first, second) = connect_twice(
        &a.place(),
        Identity::APP,
        "reconnect",
        captured,
        other,
        "twice",
    );
    if !went_through_proxy(&first, captured, "twice")
        || !went_through_proxy(&second, other, "twice")
    {
        wrong.push(format!(
            "captured twice, not each with its own destination: {} then {}",
            first.raw, second.raw
        ));
    }
    assert!(
        wrong.is_empty(),
        "{wrong:#?}\ncounters: {:?}",
        node.counters()
    );
}

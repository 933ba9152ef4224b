//! DNS capture (Istio's ISTIO_META_DNS_CAPTURE): an app's DNS over TCP, connected
//! UDP (glibc) and unconnected UDP goes to the agent's DNS proxy on 15053, the
//! replies read as coming from the server the app asked, and the proxy's own
//! queries go out untouched. Real resolver clients: glibc's `getent`, `dig`.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use common::process::TestProcess;
use common::{Identity, Place, PodOptions, Spawn, TestNode};

const AGENT_ANSWER: &str = "10.9.9.9";
const UPSTREAM_ANSWER: &str = "10.8.8.8";

fn dns_script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/dns.py"))
}

fn dns_server(
    place: &Place,
    host: &str,
    port: u16,
    answer: &str,
    identity: Identity,
) -> TestProcess {
    let mut server = Spawn::new(place, "/usr/bin/python3")
        .arg(dns_script())
        .args([
            "serve",
            "--host",
            host,
            "--port",
            &port.to_string(),
            "--answer",
            answer,
        ])
        .identity(identity)
        .spawn();
    server.wait_for_line("READY", Duration::from_secs(10));
    server
}

/// The sidecar's DNS proxy (the agent on port 15053, as the proxy's user).
fn dns_agent(place: &Place, host: &str) -> TestProcess {
    dns_server(place, host, 15053, AGENT_ANSWER, Identity::PROXY)
}

/// The DNS server the app asked, on port 53 of another pod.
fn upstream_dns(place: &Place) -> TestProcess {
    dns_server(place, "::", 53, UPSTREAM_ANSWER, Identity::ROOT)
}

fn query(place: &Place, server: &str, mode: &str, identity: Identity) -> Value {
    let finished = Spawn::new(place, "/usr/bin/python3")
        .arg(dns_script())
        .args([
            "query",
            "--server",
            server,
            "--qname",
            "ask.mesh.test",
            "--mode",
            mode,
        ])
        .identity(identity)
        .timeout(Duration::from_secs(15))
        .run();
    let line = finished.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|err| panic!("no JSON from dns.py ({err}): {finished:?}"))
}

/// Runs a command as UID/GID 1000 with its own /etc/resolv.conf (a private mount
/// namespace: the host's file is untouched).
fn with_resolv_conf(place: &Place, node: &TestNode, nameserver: &str, command: &str) -> String {
    let resolv = node
        .layout()
        .work_dir
        .join(format!("resolv-{}.conf", nameserver.replace(':', "_")));
    std::fs::write(
        &resolv,
        format!("nameserver {nameserver}\noptions timeout:2 attempts:1\n"),
    )
    .expect("write resolv.conf");
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec setpriv --reuid 1000 --regid 1000 --clear-groups {command}",
        resolv.display()
    );
    let finished = Spawn::new(place, "unshare")
        .args(["-m", "sh", "-c", &script])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(finished.status.success(), "{command}: {finished:?}");
    finished.stdout
}

fn dns_node(name: &str, dns_capture: bool) -> TestNode {
    TestNode::builder(name)
        .dual_stack()
        .meshlane_config(move |_| json!({ "dnsCapture": dns_capture }))
        .build()
}

#[test]
fn app_dns_goes_to_the_dns_proxy_and_replies_show_the_server_asked() {
    let node = dns_node("dns-on", true);
    let app = node.add_pod("app", PodOptions::new().injected());
    let upstream = node.add_pod("upstream", PodOptions::new());
    let upstream_ip = upstream.ipv4().to_string();
    let _agent = dns_agent(&app.place(), "127.0.0.1");
    let _agent6 = dns_agent(&app.place(), "::1");
    let _real = upstream_dns(&upstream.place());
    let server = format!("{upstream_ip}:53");

    for mode in ["udp-sendto", "udp-connected", "tcp"] {
        let reply = query(&app.place(), &server, mode, Identity::APP);
        assert_eq!(
            reply["answer"], AGENT_ANSWER,
            "{mode}: not answered by the DNS proxy: {reply}"
        );
        let seen_as = if mode == "udp-sendto" {
            "reply_from"
        } else {
            "peer"
        };
        assert_eq!(
            reply[seen_as],
            server.as_str(),
            "{mode}: the app must see the server it asked: {reply}"
        );
    }
    // The proxy's own upstream queries are untouched.
    let reply = query(&app.place(), &server, "udp-sendto", Identity::PROXY);
    assert_eq!(
        reply["answer"], UPSTREAM_ANSWER,
        "the proxy's query was captured: {reply}"
    );

    // A dual-stack socket asking an IPv4 server through its mapped address.
    let mapped = format!("[::ffff:{upstream_ip}]:53");
    for mode in ["udp-sendto", "udp-connected"] {
        let reply = query(&app.place(), &mapped, mode, Identity::APP);
        assert_eq!(reply["answer"], AGENT_ANSWER, "mapped {mode}: {reply}");
        assert_eq!(
            reply["reply_from"],
            server.as_str(),
            "mapped {mode}: {reply}"
        );
    }

    // IPv6 resolvers too.
    let server6 = format!("[{}]:53", upstream.ipv6());
    let reply = query(&app.place(), &server6, "udp-sendto", Identity::APP);
    assert_eq!(reply["answer"], AGENT_ANSWER, "IPv6: {reply}");
    assert_eq!(reply["reply_from"], server6.as_str(), "IPv6: {reply}");

    // Real resolver clients: glibc (connected UDP, checks the reply's source) and dig.
    let getent = with_resolv_conf(
        &app.place(),
        &node,
        &upstream_ip,
        "getent hosts ask.mesh.test",
    );
    assert!(
        getent.starts_with(AGENT_ANSWER),
        "glibc resolved {getent:?}"
    );
    for transport in ["+notcp", "+tcp"] {
        let dig = with_resolv_conf(
            &app.place(),
            &node,
            &upstream_ip,
            &format!("dig {transport} +short +tries=1 +time=3 @{upstream_ip} ask.mesh.test"),
        );
        assert_eq!(dig.trim(), AGENT_ANSWER, "dig {transport}: {dig:?}");
    }
}

#[test]
fn without_dns_capture_dns_goes_where_it_was_sent() {
    let node = dns_node("dns-off", false);
    let app = node.add_pod("app", PodOptions::new().injected());
    let upstream = node.add_pod("upstream", PodOptions::new());
    let _agent = dns_agent(&app.place(), "127.0.0.1");
    let _real = upstream_dns(&upstream.place());
    let server = format!("{}:53", upstream.ipv4());
    // (TCP to port 53 is then ordinary TCP: it goes to the outbound listener, as
    // under Istio's iptables.)
    for mode in ["udp-sendto", "udp-connected"] {
        let reply = query(&app.place(), &server, mode, Identity::APP);
        assert_eq!(reply["answer"], UPSTREAM_ANSWER, "{mode}: {reply}");
    }
}

//! A captured pod with no IPv6 address still has IPv6: the kernel gives its eth0 a
//! link-local address, and router advertisements may add SLAAC addresses later.
//! Istio writes no ip6tables rules for such a pod, so that traffic goes around
//! its sidecar; meshlane refuses it and counts it (docs/istio-capture.md, O11 and
//! I4): non-loopback IPv6 TCP out of the app and in from anywhere. Loopback
//! (`::1`) and the proxy's own connects follow the usual rules.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::time::Duration;

use common::timing::poll_until;
use common::{Connect, Identity, Pod, PodOptions, ProbeServer, TestNode};

const APP_PORT: u16 = 8080;
/// A global IPv6 address of the plain pod, as SLAAC would give it.
const GLOBAL: &str = "fd99::2";

/// The pod's eth0 link-local address, once duplicate address detection is done.
fn link_local(pod: &Pod) -> String {
    let what = format!("{}: no usable link-local address", pod.name());
    poll_until(&what, Duration::from_secs(10), || {
        let tentative = pod.ip(&["-6", "addr", "show", "tentative"]);
        let shown = pod.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "link"]);
        let address = shown
            .split_whitespace()
            .skip_while(|word| *word != "inet6")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next())
            .map(str::to_string);
        match (tentative.contains("inet6"), address) {
            (false, Some(address)) => Ok(address),
            _ => Err(shown),
        }
    })
}

fn error_of(outcome: &common::ConnectOutcome) -> String {
    assert!(outcome.reply.is_none(), "got through: {:?}", outcome.raw);
    outcome.error.clone().unwrap_or_default()
}

#[test]
fn ipv6_out_of_an_ipv4_only_pod_is_refused_but_loopback_and_the_proxy_are_not() {
    let node = TestNode::new("v6-out");
    let app = node.add_pod("app", PodOptions::new().injected());
    let plain = node.add_pod("plain", PodOptions::new());
    plain.ip(&["-6", "addr", "add", &format!("{GLOBAL}/64"), "dev", "eth0"]);
    // The route a router advertisement would have installed.
    app.ip(&["-6", "route", "add", "fd99::/64", "dev", "eth0"]);
    let plain_ll = link_local(&plain);
    link_local(&app);
    let _server = ProbeServer::start(&plain.place(), APP_PORT, "plain");
    let _own = ProbeServer::start(&app.place(), 9000, "own");
    let link_local_target = format!("[{plain_ll}%eth0]:{APP_PORT}");
    let global_target = format!("[{GLOBAL}]:{APP_PORT}");

    let refused = node.counter("ipv6_refused_outbound");
    for target in [&link_local_target, &global_target] {
        let outcome = Connect::to(target)
            .identity(Identity::APP)
            .run(&app.place());
        assert!(
            error_of(&outcome).starts_with("EPERM"),
            "{target}: {:?}",
            outcome.raw
        );
    }
    assert_eq!(node.counter("ipv6_refused_outbound"), refused + 2);

    // Loopback stays the app's own.
    let reply = Connect::to("[::1]:9000")
        .identity(Identity::APP)
        .expect_reply(&app.place());
    assert_eq!(reply.name, "own");
    // The proxy's own connects are left alone, as every other family's.
    for target in [&link_local_target, &global_target] {
        let reply = Connect::to(target)
            .identity(Identity::PROXY)
            .expect_reply(&app.place());
        assert_eq!(reply.name, "plain", "{target}");
    }
    assert_eq!(node.counter("ipv6_refused_outbound"), refused + 2);
}

#[test]
fn ipv6_into_an_ipv4_only_pod_is_refused_on_every_address() {
    let node = TestNode::new("v6-in");
    let app = node.add_pod("app", PodOptions::new().injected());
    let plain = node.add_pod("plain", PodOptions::new());
    // A SLAAC-like global address on the captured pod, and the way to it.
    app.ip(&["-6", "addr", "add", "fd99::5/64", "dev", "eth0"]);
    plain.ip(&["-6", "addr", "add", &format!("{GLOBAL}/64"), "dev", "eth0"]);
    let app_ll = link_local(&app);
    link_local(&plain);
    let _server = ProbeServer::start(&app.place(), APP_PORT, "app");

    let refused = node.counter("ipv6_refused_inbound");
    for target in [
        format!("[{app_ll}%eth0]:{APP_PORT}"),
        format!("[fd99::5]:{APP_PORT}"),
    ] {
        let outcome = Connect::to(&target).run(&plain.place());
        assert!(
            error_of(&outcome).starts_with("ECONNREFUSED"),
            "{target}: {:?}",
            outcome.raw
        );
    }
    assert!(node.counter("ipv6_refused_inbound") >= refused + 2);
    // IPv4 into the pod is unchanged (no proxy listening: refused as ever).
    let v4 = Connect::to(format!("{}:{APP_PORT}", app.ipv4())).run(&plain.place());
    assert!(v4.reply.is_none());
    // Inside the pod, over loopback, the app is reached as before.
    let reply = Connect::to(format!("[::1]:{APP_PORT}"))
        .identity(Identity::APP)
        .expect_reply(&app.place());
    assert_eq!(reply.name, "app");
}

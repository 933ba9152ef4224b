//! Outbound capture, for real: the chain bridge + host-local → meshlane sets up
//! pods as network namespaces, a real Envoy runs as the sidecar (UID 1337), and
//! real connections go through the kernel's cgroup hooks.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::Duration;

use common::timing::poll;
use common::{
    Connect, Envoy, EnvoyOptions, Family, Identity, Pod, PodOptions, ProbeServer, TestNode,
};

const SERVER_PORT: u16 = 8080;
const LOG_WAIT: Duration = Duration::from_secs(10);

fn dual_stack_node(name: &str) -> TestNode {
    TestNode::builder(name).dual_stack().build()
}

fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Pod `a`, injected, with its Envoy; pod `b`, not injected, whose probe server
/// answers on SERVER_PORT as "b" (kept running while the test holds it).
fn app_and_server(node: &TestNode, envoy: EnvoyOptions) -> (Pod<'_>, Pod<'_>, Envoy, ProbeServer) {
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new());
    let envoy = a.start_envoy(envoy);
    let server = ProbeServer::start(&b.place(), SERVER_PORT, "b");
    (a, b, envoy, server)
}

#[test]
fn an_apps_connect_goes_through_its_envoy_to_the_right_server() {
    let node = dual_stack_node("out-v4");
    let (a, b, envoy, _server) = app_and_server(&node, EnvoyOptions::new());

    let destination = addr(b.ipv4(), SERVER_PORT);
    let outcome = Connect::to(destination)
        .send("through-envoy")
        .identity(Identity::APP)
        .run(&a.place());
    let reply = outcome.expect_reply();
    assert_eq!(reply.name, "b", "reached the wrong server");
    assert_eq!(reply.got, "through-envoy", "bytes were changed on the way");
    // Envoy's upstream connection leaves from pod A's own address.
    assert_eq!(reply.peer.ip(), IpAddr::from(a.ipv4()));
    // Like a NATed socket, the app still sees the destination it asked for.
    assert_eq!(
        outcome.peer,
        Some(destination),
        "getpeername shows the rewrite"
    );

    let log = envoy.wait_for_access_log(1, LOG_WAIT);
    assert_eq!(
        log.len(),
        1,
        "exactly the app's connection went through Envoy: {log:?}"
    );
    let entry = &log[0];
    assert_eq!(entry.listener, "virtualOutbound");
    assert_eq!(
        entry.downstream_local,
        destination.to_string(),
        "original_dst restored"
    );
    assert_eq!(entry.upstream_host, destination.to_string());
    assert!(
        entry.downstream_remote.starts_with("127.0.0.1:"),
        "{entry:?}"
    );
    assert_eq!(entry.bytes_received, "through-envoy\n".len() as u64);
    assert_eq!(
        envoy.stat("cluster.PassthroughCluster.upstream_cx_total"),
        Some(1)
    );
}

#[test]
fn ipv6_connects_are_captured_to_the_ipv6_listener() {
    let node = dual_stack_node("out-v6");
    let (a, b, envoy, _server) = app_and_server(&node, EnvoyOptions::new());

    let destination = addr(b.ipv6(), SERVER_PORT);
    let (outcome, reply) = Connect::to(destination)
        .family(Family::V6)
        .send("v6")
        .identity(Identity::APP)
        .expect_reply_from(&a.place(), "b");
    assert_eq!(reply.peer.ip(), IpAddr::from(a.ipv6()));
    assert_eq!(outcome.peer, Some(destination));

    let log = envoy.wait_for_access_log(1, LOG_WAIT);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].listener, "virtualOutboundIpv6");
    assert_eq!(log[0].downstream_local, destination.to_string());
    assert_eq!(log[0].upstream_host, destination.to_string());
    assert!(
        log[0].downstream_remote.starts_with("[::1]:"),
        "{:?}",
        log[0]
    );
}

#[test]
fn an_ipv4_mapped_destination_on_a_dual_stack_socket_is_captured_as_ipv4() {
    let node = dual_stack_node("out-mapped");
    // Envoy listens on IPv4 only: the mapped connect must still reach it.
    let (a, b, envoy, _server) = app_and_server(&node, EnvoyOptions::new().ipv4_only());

    let (outcome, _) = Connect::to(addr(b.ipv4(), SERVER_PORT))
        .family(Family::Mapped)
        .send("mapped")
        .identity(Identity::APP)
        .expect_reply_from(&a.place(), "b");
    assert_eq!(
        outcome.raw["peer_raw"].as_str(),
        Some(format!("[::ffff:{}]:{SERVER_PORT}", b.ipv4()).as_str()),
        "the app sees the mapped destination it asked for"
    );

    let log = envoy.wait_for_access_log(1, LOG_WAIT);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].listener, "virtualOutbound");
    assert_eq!(
        log[0].upstream_host,
        addr(b.ipv4(), SERVER_PORT).to_string()
    );
}

/// Only sockets of mesh pods are touched: a process in the hooked cgroup but in no
/// pod, a pod that is not captured, and the proxy's own upstream connections all
/// reach the server directly while the captured app goes through Envoy.
#[test]
fn sockets_outside_mesh_pods_and_the_proxys_own_are_untouched() {
    let node = dual_stack_node("out-others");
    let (a, b, envoy, _server) = app_and_server(&node, EnvoyOptions::new());
    let plain = node.add_pod("plain", PodOptions::new());
    let destination = addr(b.ipv4(), SERVER_PORT);

    // All at the same time, so that the hooks see them interleaved.
    let outside = node.outside_pods();
    let [captured_app, from_node, from_plain, from_proxy] = thread::scope(|scope| {
        [
            ("app", Identity::APP, a.place()),
            ("node", Identity::APP, outside),
            ("plain", Identity::APP, plain.place()),
            ("proxy", Identity::PROXY, a.place()),
        ]
        .map(|(text, identity, place)| {
            scope.spawn(move || {
                Connect::to(destination)
                    .send(text)
                    .identity(identity)
                    .run(&place)
            })
        })
        .map(|connect| connect.join().unwrap())
    });

    for (who, outcome) in [
        ("app", &captured_app),
        ("node", &from_node),
        ("plain", &from_plain),
        ("proxy", &from_proxy),
    ] {
        let reply = outcome
            .reply
            .as_ref()
            .unwrap_or_else(|| panic!("{who}: no reply: {outcome:?}"));
        assert_eq!((reply.name.as_str(), reply.got.as_str()), ("b", who));
        assert_eq!(outcome.peer, Some(destination), "{who}");
    }
    // Untouched connections arrive from their own source, never via Envoy.
    let peer_ip = |outcome: &common::ConnectOutcome| outcome.reply.as_ref().unwrap().peer.ip();
    assert_eq!(peer_ip(&from_plain), IpAddr::from(plain.ipv4()));
    assert_ne!(peer_ip(&from_node), IpAddr::from(a.ipv4()));
    // Untouched sockets talk to the server directly: their local port is the one
    // the server saw. The captured app's local port belongs to its loopback hop.
    for (who, outcome) in [
        ("node", &from_node),
        ("plain", &from_plain),
        ("proxy", &from_proxy),
    ] {
        assert_eq!(
            outcome.local.map(|l| l.port()),
            outcome.reply.as_ref().map(|r| r.peer.port()),
            "{who} was not connected directly"
        );
    }

    let log = envoy.wait_for_access_log(1, LOG_WAIT);
    thread::sleep(Duration::from_millis(300)); // let any stray entry be flushed too
    let log = if log.len() == 1 {
        envoy.access_entries()
    } else {
        log
    };
    assert_eq!(
        log.len(),
        1,
        "only the captured app may go through Envoy: {log:?}"
    );
    assert_eq!(
        log[0].bytes_received,
        "app\n".len() as u64,
        "the Envoy connection is the app's"
    );
}

/// Istio's `istio-validation` init container, as it runs when the CNI plugin does
/// the capture: as UID 1337, 127.0.0.1 → 127.0.0.6:15002 must arrive at the 15006
/// listener and report port 15002 as its original destination.
#[test]
fn istios_own_start_up_check_passes() {
    let node = TestNode::new("out-validation");
    let a = node.add_pod("a", PodOptions::new().injected());
    let outcome = common::probe::istio_validation(&a.place(), false);
    assert!(outcome.ok, "istio-validation failed: {:?}", outcome.raw);
    assert_eq!(outcome.listener, Some(15006));
    assert_eq!(
        outcome.original_dst,
        Some("127.0.0.6:15002".parse().unwrap())
    );

    // Without capture the same check fails (the test can tell the difference).
    let plain = node.add_pod("plain", PodOptions::new());
    let outcome = common::probe::istio_validation(&plain.place(), false);
    assert!(
        !outcome.ok,
        "validation passed without capture: {:?}",
        outcome.raw
    );
}

/// Kuma's `kuma-validation` init container, as it runs when a CNI plugin captures
/// (docs/meshes.md): as kuma-dp (5678:5678), 127.0.0.1 → 127.0.0.6:<20000–29999>
/// must reach the server on 127.0.0.1:15006, and [::1] → [::6] on [::1]:15006. A
/// pod Kuma's injector did not mark (an Istio pod) is left alone: there it fails.
#[test]
fn kumas_own_start_up_check_passes() {
    let node = TestNode::builder("out-kuma-validation")
        .dual_stack()
        .meshlane_config(|_| serde_json::json!({"mesh": "kuma"}))
        .build();
    let kuma_dp = Identity {
        uid: 5678,
        gid: 5678,
    };
    let a = node.add_pod("a", PodOptions::new().kuma_injected());
    for (ipv6, to) in [(false, "127.0.0.6:24242"), (true, "[::6]:24242")] {
        let outcome = common::probe::kuma_validation(&a.place(), kuma_dp, ipv6, 24242);
        assert!(outcome.ok, "kuma-validation failed: {:?}", outcome.raw);
        assert_eq!(outcome.listener, Some(15006));
        assert_eq!(outcome.original_dst, Some(to.parse().unwrap()));
    }

    let istio = node.add_pod("istio", PodOptions::new().injected());
    let outcome = common::probe::kuma_validation(&istio.place(), kuma_dp, false, 24242);
    assert!(
        !outcome.ok,
        "validation passed in a pod of another mesh: {:?}",
        outcome.raw
    );
}

/// Linkerd's `linkerd-network-validator` init container, with its chart's
/// addresses (docs/meshes.md): 0.0.0.0:4140 must get the connection to
/// 1.1.1.1:20001, and [::]:4140 the one to [fd00::1]:20001 (connect() is
/// rewritten, no packet leaves the pod). A pod without linkerd-proxy is left
/// alone: there it fails (towards another pod, nothing listening).
#[test]
fn linkerds_own_start_up_check_passes() {
    let (node, _api) =
        common::linkerd_node::linkerd_node(TestNode::builder("out-linkerd-validator").dual_stack());
    let a = node.add_pod("a", PodOptions::new().linkerd_injected());
    for (listen, connect) in [
        ("0.0.0.0:4140", "1.1.1.1:20001"),
        ("[::]:4140", "[fd00::1]:20001"),
    ] {
        let failed = common::probe::linkerd_network_validator(&a.place(), listen, connect);
        assert_eq!(failed, None, "{listen} ← {connect}");
    }

    let plain = node.add_pod("plain", PodOptions::new().linkerd_injected());
    let elsewhere = format!("{}:20001", a.ipv4());
    let failed =
        common::probe::linkerd_network_validator(&plain.place(), "0.0.0.0:4140", &elsewhere);
    assert!(
        failed.is_some(),
        "validation passed in a pod without linkerd-proxy"
    );
}

/// A client that sends and closes at once (statsd, syslog, Graphite over TCP) is
/// gone before a busy proxy accepts: its socket became a timewait socket when its
/// FIN was ACKed. The proxy must still read where the connection was going, or
/// the bytes go to its blackhole.
#[test]
fn a_client_that_closes_before_the_proxy_accepts_keeps_its_destination() {
    let node = TestNode::new("out-fire-forget");
    let pod = node.add_pod("a", PodOptions::new().injected());
    let proxy = ProbeServer::original_dst(&pod.place(), "127.0.0.1", 15001, "proxy")
        .accept_after(Duration::from_millis(1500))
        .start();
    let sent = Connect::to("10.250.7.7:2003")
        .identity(Identity::APP)
        .send("metric 1")
        .close_at_once()
        .run(&pod.place());
    assert_eq!(sent.error, None, "{}", sent.raw);
    let answered = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let output = proxy.process.output();
        let line = output.lines().find_map(|l| l.strip_prefix("ANSWER "));
        let answer = line.map(serde_json::from_str::<serde_json::Value>);
        answer.ok_or(output)
    });
    let answer = answered
        .unwrap_or_else(|output| panic!("the proxy never answered: {output}"))
        .expect("answer is JSON");
    assert_eq!(answer["got"], "metric 1", "{answer}");
    assert_eq!(answer["original_dst"], "10.250.7.7:2003", "{answer}");
    // The proxy's own view of its peer stays the app's socket: only the app's
    // getpeername is restored to the destination it asked for.
    let peer = answer["peer"].as_str().unwrap_or_default();
    assert!(peer.starts_with("127.0.0.1:"), "{answer}");
}

/// The same `127.0.0.1:p → 127.0.0.1:15001` tuple can exist in many pods at once;
/// each proxy must read its own pod's original destination.
#[test]
fn the_same_tuple_in_two_pods_keeps_each_pods_destination() {
    let node = TestNode::new("out-collide");
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new().injected());
    // Proxy stand-ins: A's answers late, after B's identical tuple is recorded.
    let _proxy_a = ProbeServer::original_dst(&a.place(), "127.0.0.1", 15001, "proxy-a")
        .answer_after(Duration::from_millis(1500))
        .start();
    let _proxy_b = ProbeServer::original_dst(&b.place(), "127.0.0.1", 15001, "proxy-b").start();
    // The kernel picks the source port of the rewritten connect; with a one-port
    // ephemeral range in each pod (a per-netns setting) both pick the same one.
    let source = "127.0.0.1:41001";
    for pod in [&a, &b] {
        pod.sysctl("net.ipv4.ip_local_port_range", "41001 41001");
    }
    let (to_a, to_b) = ("10.250.1.1:1111", "10.250.2.2:2222");

    let (from_a, from_b) = thread::scope(|scope| {
        let from_a = scope.spawn(|| Connect::to(to_a).identity(Identity::APP).run(&a.place()));
        thread::sleep(Duration::from_millis(400));
        let from_b = scope.spawn(|| {
            Connect::to(to_b)
                .hold(Duration::from_secs(3))
                .identity(Identity::APP)
                .run(&b.place())
        });
        (from_a.join().unwrap(), from_b.join().unwrap())
    });

    let reply_a = from_a
        .reply
        .unwrap_or_else(|| panic!("a: {:?}", from_a.raw));
    let reply_b = from_b
        .reply
        .unwrap_or_else(|| panic!("b: {:?}", from_b.raw));
    assert_eq!(reply_a.name, "proxy-a");
    assert_eq!(reply_b.name, "proxy-b");
    assert_eq!(
        reply_a.peer.to_string(),
        source,
        "a's tuple is the shared one"
    );
    assert_eq!(
        reply_b.peer.to_string(),
        source,
        "b's tuple is the shared one"
    );
    assert_eq!(reply_a.original_dst.as_deref(), Some(to_a));
    assert_eq!(reply_b.original_dst.as_deref(), Some(to_b));
}

/// getsockopt calls that are not SO_ORIGINAL_DST pass through untouched, including
/// ones with buffers larger than a page (iptables-legacy-save's IPT_SO_GET_ENTRIES).
#[test]
fn unrelated_getsockopt_calls_keep_working_in_a_captured_pod() {
    let node = TestNode::new("out-sockopt");
    let a = node.add_pod("a", PodOptions::new().injected());
    for place in [a.place(), node.outside_pods()] {
        let report = common::probe::getsockopt_passthrough(&place);
        assert!(
            report.ok,
            "{}: failures: {:?}\n{:#}",
            place.label,
            report.failures(),
            report.raw
        );
    }
}

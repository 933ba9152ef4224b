//! Inbound capture, for real: every TCP connection into a captured pod reaches the
//! proxy's 15006 listener (a real Envoy, UID 1337), which learns the original
//! destination through SO_ORIGINAL_DST and calls the app from 127.0.0.6 / ::6 —
//! for callers in other pods of the node and from outside every pod alike.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::Duration;

use common::{
    Connect, Envoy, EnvoyOptions, Family, Identity, Pod, PodOptions, ProbeServer, TestNode,
};

const APP_PORT: u16 = 8080;
const LOG_WAIT: Duration = Duration::from_secs(10);

fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn passthrough_source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => "127.0.0.6".parse().unwrap(),
        IpAddr::V6(_) => "::6".parse().unwrap(),
    }
}

/// Whose sidecar: Istio's (1337:1337), Kuma's kuma-dp (5678:5678, captured with
/// `mesh: "kuma"`, docs/meshes.md) — Kuma's listener ports are Istio's 15001 and
/// 15006, for IPv6 too — or Linkerd's (`mesh: "linkerd"`): Envoy as 2102:2102 on
/// 4140 and 4143 stands in for linkerd2-proxy, which is not available here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mesh {
    Istio,
    Kuma,
    Linkerd,
}

const LINKERD_PROXY: Identity = Identity {
    uid: 2102,
    gid: 2102,
};

const KUMA_DP: Identity = Identity {
    uid: 5678,
    gid: 5678,
};

/// The whole sidecar path: app A → Envoy A (15001) → Envoy B (15006) → app B,
/// which sees the call coming from Envoy's passthrough source.
fn full_sidecar_path(family: Family, mesh: Mesh) {
    let name = format!("in-path-{mesh:?}-{family:?}").to_lowercase();
    let mut builder = TestNode::builder(&name).dual_stack();
    let (pod, proxy) = match mesh {
        Mesh::Istio => (PodOptions::new().injected(), Identity::PROXY),
        Mesh::Kuma => {
            builder = builder.meshlane_config(|_| serde_json::json!({"mesh": "kuma"}));
            (PodOptions::new().kuma_injected(), KUMA_DP)
        }
        Mesh::Linkerd => (PodOptions::new().linkerd_injected(), LINKERD_PROXY),
    };
    // Linkerd's selection reads the pods from the (stand-in) API server.
    let (node, _api) = match mesh {
        Mesh::Linkerd => {
            let (node, api) = common::linkerd_node::linkerd_node(builder);
            (node, Some(api))
        }
        _ => (builder.build(), None),
    };
    let a = node.add_pod("a", pod.clone());
    let b = node.add_pod("b", pod);
    let envoy = || match mesh {
        Mesh::Linkerd => EnvoyOptions::new().identity(proxy).ports(4140, 4143),
        _ => EnvoyOptions::new().identity(proxy),
    };
    let envoy_a = a.start_envoy(envoy());
    let envoy_b = b.start_envoy(envoy().with_inbound());
    let _app_b = ProbeServer::start(&b.place(), APP_PORT, "app-b");
    let (b_ip, a_ip): (IpAddr, IpAddr) = match family {
        Family::V6 => (b.ipv6().into(), a.ipv6().into()),
        _ => (b.ipv4().into(), a.ipv4().into()),
    };
    let destination = addr(b_ip, APP_PORT);

    let (_, reply) = Connect::to(destination)
        .family(family)
        .send("sidecar-to-sidecar")
        .identity(Identity::APP)
        .expect_reply_from(&a.place(), "app-b");
    assert_eq!(
        reply.peer.ip(),
        passthrough_source(b_ip),
        "the app is called by Envoy B"
    );
    assert_eq!(reply.local, destination);

    let out = envoy_a.wait_for_access_log(1, LOG_WAIT);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].listener.starts_with("virtualOutbound"),
        "{:?}",
        out[0]
    );
    assert_eq!(out[0].upstream_host, destination.to_string());

    let inbound = envoy_b.wait_for_access_log(1, LOG_WAIT);
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    let entry = &inbound[0];
    assert!(entry.listener.starts_with("virtualInbound"), "{entry:?}");
    assert_eq!(
        entry.downstream_local,
        destination.to_string(),
        "SO_ORIGINAL_DST"
    );
    assert_eq!(
        entry.downstream_remote.parse::<SocketAddr>().unwrap().ip(),
        a_ip,
        "Envoy A's upstream connection arrives from pod A"
    );
    assert_eq!(entry.upstream_host, destination.to_string());
    assert_eq!(
        entry.bytes_received,
        "sidecar-to-sidecar\n".len() as u64,
        "the bytes crossed Envoy B"
    );
}

/// Pod `b`, injected, and its app answering on APP_PORT as "app-b"; no sidecar
/// runs yet.
fn injected_pod_with_app(node: &TestNode) -> (Pod<'_>, ProbeServer) {
    let b = node.add_pod("b", PodOptions::new().injected());
    let app = ProbeServer::start(&b.place(), APP_PORT, "app-b");
    (b, app)
}

/// [`injected_pod_with_app`] with its Envoy taking inbound.
fn pod_with_inbound_sidecar(node: &TestNode) -> (Pod<'_>, Envoy, ProbeServer) {
    let (b, app) = injected_pod_with_app(node);
    let envoy = b.start_envoy(EnvoyOptions::new().with_inbound());
    (b, envoy, app)
}

crate::test_cases!(full_sidecar_path {
    a_call_from_another_pod_crosses_both_sidecars_ipv4: (Family::V4, Mesh::Istio);
    a_call_from_another_pod_crosses_both_sidecars_ipv6: (Family::V6, Mesh::Istio);
    /// Linkerd sends both families to 4140 outbound and 4143 inbound
    /// (docs/meshes.md); Envoy stands in for linkerd2-proxy.
    linkerd_a_call_from_another_pod_crosses_both_linkerd_sidecars_ipv4:
        (Family::V4, Mesh::Linkerd);
    linkerd_a_call_from_another_pod_crosses_both_linkerd_sidecars_ipv6:
        (Family::V6, Mesh::Linkerd);
    kuma_a_call_from_another_pod_crosses_both_kuma_sidecars_ipv4: (Family::V4, Mesh::Kuma);
    /// Kuma sends IPv6 inbound to the same 15006 (docs/meshes.md).
    kuma_a_call_from_another_pod_crosses_both_kuma_sidecars_ipv6: (Family::V6, Mesh::Kuma);
});

/// A caller outside every mesh pod (standing in for a client on another node) is
/// captured the same way; an excluded port reaches the app directly.
#[test]
fn callers_outside_the_mesh_reach_the_app_through_envoy_except_on_excluded_ports() {
    let node = TestNode::builder("in-outside").dual_stack().build();
    let (b, envoy, _app) = pod_with_inbound_sidecar(&node);
    let _status = ProbeServer::start(&b.place(), 15020, "status-b");
    let outside = node.outside_pods();

    for ip in [IpAddr::from(b.ipv4()), IpAddr::from(b.ipv6())] {
        let reply = Connect::to(addr(ip, APP_PORT))
            .send("from-outside")
            .expect_reply(&outside);
        assert_eq!(reply.name, "app-b");
        assert_eq!(
            reply.peer.ip(),
            passthrough_source(ip),
            "{ip}: not via Envoy"
        );
    }
    let log = envoy.wait_for_access_log(2, LOG_WAIT);
    assert_eq!(log.len(), 2, "{log:?}");

    // 15020 (Istio's status port) is never captured inbound.
    let reply = Connect::to(addr(b.ipv4(), 15020))
        .send("status")
        .expect_reply(&outside);
    assert_eq!(reply.name, "status-b");
    assert_ne!(reply.peer.ip(), passthrough_source(reply.peer.ip()));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        envoy.access_entries().len(),
        2,
        "an excluded port went through Envoy"
    );
    assert!(node.counter("inbound_bypass_port") >= 1);
}

/// Fail closed: while the proxy does not listen, a captured port refuses
/// connections instead of handing them to the app; when the proxy (re)starts,
/// steering resumes with its new listener.
#[test]
fn inbound_is_refused_until_the_proxy_listens_and_resumes_after_a_restart() {
    let node = TestNode::new("in-failclosed");
    let (b, _app) = injected_pod_with_app(&node);
    let outside = node.outside_pods();
    let call = || {
        Connect::to(addr(b.ipv4(), APP_PORT))
            .send("x")
            .run(&outside)
    };

    let before = call();
    assert!(!before.ok, "reached the app around the sidecar: {before:?}");
    assert!(
        before
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("ECONNREFUSED"),
        "{before:?}"
    );
    assert!(node.counter("inbound_refused_no_listener") >= 1);

    let envoy = b.start_envoy(EnvoyOptions::new().with_inbound());
    let reply = call().reply.expect("through Envoy once it listens");
    assert_eq!(reply.peer.ip(), passthrough_source(reply.peer.ip()));
    drop(envoy);

    let while_down = call();
    assert!(
        !while_down.ok,
        "reached the app while the proxy was down: {while_down:?}"
    );

    let envoy = b.start_envoy(EnvoyOptions::new().with_inbound());
    let reply = call().reply.expect("through the restarted Envoy");
    assert_eq!(reply.peer.ip(), passthrough_source(reply.peer.ip()));
    assert_eq!(envoy.wait_for_access_log(1, LOG_WAIT).len(), 1);
}

/// Envoy opens one SO_REUSEPORT listener per worker: inbound keeps working while
/// any of them lives. Only wildcard listeners on 15006 count as the proxy's.
#[test]
fn any_live_reuseport_listener_takes_inbound_and_only_wildcards_register() {
    let node = TestNode::new("in-workers");
    let (b, _app) = injected_pod_with_app(&node);
    let outside = node.outside_pods();
    let destination = addr(b.ipv4(), APP_PORT);

    // A listener on a specific address is not the proxy's virtualInbound.
    let mut specific = ProbeServer::original_dst(&b.place(), "127.0.0.1", 15006, "local").start();
    let refused = Connect::to(destination).run(&outside);
    assert!(
        !refused.ok,
        "a non-wildcard listener took inbound: {refused:?}"
    );
    specific.process.kill(); // frees the port for the wildcard workers

    let mut first = ProbeServer::original_dst(&b.place(), "0.0.0.0", 15006, "w1")
        .reuseport()
        .start();
    let _second = ProbeServer::original_dst(&b.place(), "0.0.0.0", 15006, "w2")
        .reuseport()
        .start();
    assert!(node.counter("inbound_listener_registered") >= 2);
    for _ in 0..4 {
        let reply = Connect::to(destination).expect_reply(&outside);
        assert!(["w1", "w2"].contains(&reply.name.as_str()), "{reply:?}");
        assert_eq!(reply.original_dst, Some(destination.to_string()));
    }
    first.process.kill();
    for _ in 0..4 {
        let reply = Connect::to(destination).expect_reply(&outside);
        assert_eq!(
            reply.name, "w2",
            "the surviving worker must take every connection"
        );
        assert_eq!(reply.original_dst, Some(destination.to_string()));
    }
}

/// Inside the pod: the proxy reaching its own pod address (an app called its own
/// Service) traverses the inbound listener; the app reaching its own address does
/// not (docs/istio-capture.md, O3 and O4), and neither is inbound.
#[test]
fn connections_inside_the_pod() {
    let node = TestNode::builder("in-self").dual_stack().build();
    let (b, envoy, _app) = pod_with_inbound_sidecar(&node);

    for ip in [IpAddr::from(b.ipv4()), IpAddr::from(b.ipv6())] {
        let own = addr(ip, APP_PORT);
        for (identity, text, peer, why) in [
            (
                Identity::PROXY,
                "proxy-to-self",
                passthrough_source(ip),
                "not via 15006",
            ),
            (
                Identity::APP,
                "app-to-self",
                ip,
                "the app's own call was captured",
            ),
        ] {
            let reply = Connect::to(own)
                .send(text)
                .identity(identity)
                .expect_reply(&b.place());
            assert_eq!(reply.peer.ip(), peer, "{ip}: {why}");
        }
    }
    let log = envoy.wait_for_access_log(2, LOG_WAIT);
    thread::sleep(Duration::from_millis(300));
    let log = if log.len() == 2 {
        envoy.access_entries()
    } else {
        log
    };
    assert_eq!(log.len(), 2, "only the proxy's two calls: {log:?}");
    for entry in &log {
        assert!(entry.listener.starts_with("virtualInbound"), "{entry:?}");
        assert_eq!(entry.bytes_received, "proxy-to-self\n".len() as u64);
    }
    assert!(node.counter("inbound_redirected") >= 2);
}

/// DEL removes the pod's steering at once; a new pod that gets the same address
/// is not steered to the old pod's listener.
#[test]
fn del_removes_steering_and_a_reused_ip_is_not_steered_to_a_stale_listener() {
    let node = TestNode::new("in-reuse");
    let mut old = node.add_pod("old", PodOptions::new().injected());
    let old_ip = old.ipv4();
    let old_envoy = old.start_envoy(EnvoyOptions::new().with_inbound());
    let _old_app = ProbeServer::start(&old.place(), APP_PORT, "old-app");
    let outside = node.outside_pods();
    let destination = addr(old_ip, APP_PORT);

    let reply = Connect::to(destination).expect_reply(&outside);
    assert_eq!(reply.peer.ip(), passthrough_source(reply.peer.ip()));
    assert_eq!(old_envoy.wait_for_access_log(1, LOG_WAIT).len(), 1);

    // meshlane's DEL while the old netns, its network and its proxy still exist:
    // steering is gone at once.
    let mut env = node.cni_env("DEL", Some(old.runtime()));
    env.retain(|(key, _)| key != "CNI_NETNS");
    let mut conf = node.meshlane_netconf("1.0.0");
    conf["prevResult"] = old.result().cloned().expect("ADD result");
    let del = node.run_meshlane(&env, conf.to_string());
    assert!(del.status.success(), "{del:?}");
    let reply = Connect::to(destination).expect_reply(&outside);
    assert_eq!(reply.name, "old-app");
    assert_ne!(reply.peer.ip(), passthrough_source(reply.peer.ip()));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(old_envoy.access_entries().len(), 1, "steered after DEL");

    // The runtime's full DEL frees the address; the old proxy lives on.
    old.del();
    // A new captured pod with the same address.
    let new = node.add_pod(
        "new",
        PodOptions::new()
            .injected()
            .cni_arg("IP", &old_ip.to_string()),
    );
    assert_eq!(
        new.ipv4(),
        old_ip,
        "host-local must hand out the requested address"
    );
    let _new_app = ProbeServer::start(&new.place(), APP_PORT, "new-app");
    let before_proxy = Connect::to(destination).run(&outside);
    assert!(
        !before_proxy.ok,
        "the new pod's inbound reached something without its own proxy: {before_proxy:?}"
    );
    let new_envoy = new.start_envoy(EnvoyOptions::new().with_inbound());
    let reply = Connect::to(destination).expect_reply(&outside);
    assert_eq!(reply.name, "new-app");
    assert_eq!(new_envoy.wait_for_access_log(1, LOG_WAIT).len(), 1);
    assert_eq!(
        old_envoy.access_entries().len(),
        1,
        "the old proxy got new traffic"
    );
}

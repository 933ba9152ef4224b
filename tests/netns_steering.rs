//! Inbound steering is bound to the netns it runs in (docs/reliability.md): two
//! pods may hold the same address (overlapping Multus networks), and ADDs and DELs
//! may come in any order while addresses are reused, yet a connection is only
//! ever handed to the proxy of the pod whose netns it arrived in, and no ADD can
//! take a steered address from a live pod.
//!
//! Each pod gets a second interface, `net1`, a veth whose other end sits in a
//! plain (uncaptured) client pod on the same overlapping network: the callers.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use meshlane::datapath::inbound_link::netns_alive;

use serde_json::{json, Value};

use common::timing::wait_until;
use common::{Connect, Envoy, EnvoyOptions, PluginOutput, Pod, PodOptions, ProbeServer, TestNode};

/// The address both pods hold on their `net1`.
const SHARED: &str = "192.168.77.5";
const APP_PORT: u16 = 8080;
const LOG_WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_secs(2);

/// Gives `pod` a `net1` with the shared address, its peer in `client` with
/// `client_ip` (same /24).
fn overlapping_net1(pod: &Pod, client: &Pod, client_ip: &str) {
    pod.ip(&[
        "link",
        "add",
        "net1",
        "type",
        "veth",
        "peer",
        "name",
        "c1",
        "netns",
        client.netns_name(),
    ]);
    pod.ip(&["addr", "add", &format!("{SHARED}/24"), "dev", "net1"]);
    pod.ip(&["link", "set", "net1", "up"]);
    client.ip(&["addr", "add", &format!("{client_ip}/24"), "dev", "c1"]);
    client.ip(&["link", "set", "c1", "up"]);
}

/// Two injected pods A and B, each with a `net1` holding the same address (an
/// overlapping Multus network) and a client pod on that network.
fn two_injected_pods_on_one_address(node: &TestNode) -> (Pod<'_>, Pod<'_>, Pod<'_>, Pod<'_>) {
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new().injected());
    let client_a = node.add_pod("ca", PodOptions::new());
    let client_b = node.add_pod("cb", PodOptions::new());
    overlapping_net1(&a, &client_a, "192.168.77.9");
    overlapping_net1(&b, &client_b, "192.168.77.9");
    (a, b, client_a, client_b)
}

/// meshlane alone for `pod`'s `net1` (as Multus runs a chain per network), with
/// the shared address in its prevResult.
fn meshlane_net1(node: &TestNode, pod: &Pod, command: &str) -> PluginOutput {
    let mut env = node.cni_env(command, Some(pod.runtime()));
    for (key, value) in env.iter_mut() {
        if key == "CNI_IFNAME" {
            *value = "net1".into();
        }
    }
    let mut conf = node.meshlane_netconf("1.0.0");
    conf["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net1", "sandbox": pod.netns_path()}],
        "ips": [{"address": format!("{SHARED}/24"), "interface": 0}]
    });
    conf["runtimeConfig"] = json!({
        "io.kubernetes.cri.pod-annotations": {
            "sidecar.istio.io/status": common::pod::INJECTED_STATUS
        }
    });
    node.run_meshlane(&env, Value::to_string(&conf))
}

fn shared_ip() -> IpAddr {
    SHARED.parse().unwrap()
}

fn steered_for(node: &TestNode) -> Option<u64> {
    node.maps().address_owner(shared_ip()).unwrap()
}

/// A call from `client` to the shared address; the name of the server that
/// answered, or the error.
fn call(client: &Pod, text: &str) -> Result<String, String> {
    let outcome = Connect::to(format!("{SHARED}:{APP_PORT}"))
        .send(text)
        .timeout(Duration::from_secs(3))
        .run(&client.place());
    match outcome.reply {
        Some(reply) => Ok(reply.name),
        None => Err(format!("{:?}", outcome.error)),
    }
}

fn inbound_entries(envoy: &Envoy) -> usize {
    envoy
        .access_entries()
        .iter()
        .filter(|entry| entry.listener.starts_with("virtualInbound"))
        .count()
}

/// Pod A steers the shared address; pod B has it too on a network meshlane does
/// not manage. A call arriving in B's netns is B's: it must reach B's own socket,
/// never A's proxy (nor be refused because A's proxy is elsewhere).
#[test]
fn an_address_another_pod_steers_is_left_to_the_netns_it_arrives_in() {
    let node = TestNode::new("ns-overlap");
    let (a, b, client_a, client_b) = two_injected_pods_on_one_address(&node);
    let add = meshlane_net1(&node, &a, "ADD");
    assert!(add.status.success(), "{add:?}");
    assert_eq!(steered_for(&node), Some(a.netns_cookie()));

    let envoy_a = a.start_envoy(EnvoyOptions::new().with_inbound());
    let _app_a = ProbeServer::start(&a.place(), APP_PORT, "app-a");
    let _app_b = ProbeServer::start(&b.place(), APP_PORT, "app-b");

    // Into A: A's proxy, then A's app.
    assert_eq!(call(&client_a, "to-a").as_deref(), Ok("app-a"));
    envoy_a.wait_for_access_log(1, LOG_WAIT);
    let before = inbound_entries(&envoy_a);
    let foreign = node.counter("inbound_foreign_address");

    // Into B: B's app, and A's proxy never hears of it.
    assert_eq!(call(&client_b, "to-b").as_deref(), Ok("app-b"));
    std::thread::sleep(QUIET);
    assert_eq!(inbound_entries(&envoy_a), before, "A's proxy took B's call");
    assert!(node.counter("inbound_foreign_address") > foreign);
}

/// With meshlane in both pods' chains for the overlapping network, the second ADD
/// fails, names the address and the pod holding it, and leaves nothing behind.
#[test]
fn a_second_live_pod_cannot_claim_a_steered_address() {
    let node = TestNode::new("ns-claim");
    let (a, b, _client_a, _client_b) = two_injected_pods_on_one_address(&node);
    assert!(meshlane_net1(&node, &a, "ADD").status.success());
    let entries_of_b = node.maps().entries_of(b.netns_cookie()).unwrap();

    let second = meshlane_net1(&node, &b, "ADD");
    let error = second
        .error()
        .unwrap_or_else(|| panic!("the second claim must fail: {second:?}"));
    assert_eq!(error.code, 7, "{error:?}");
    for mention in [SHARED, a.name(), "excludeInterfaces"] {
        assert!(
            error.msg.contains(mention),
            "{:?} lacks {mention}",
            error.msg
        );
    }
    assert_eq!(steered_for(&node), Some(a.netns_cookie()));
    assert_eq!(
        node.maps().entries_of(b.netns_cookie()).unwrap(),
        entries_of_b,
        "the failed ADD left records behind"
    );
    // DEL of the failed attachment is harmless and A keeps its address.
    assert!(meshlane_net1(&node, &b, "DEL").status.success());
    assert_eq!(steered_for(&node), Some(a.netns_cookie()));
}

/// The address goes from A to B (A's DEL, then B's ADD); then an ADD for A that
/// lost the race with its own DEL arrives. It must not take the address back:
/// B's callers keep reaching B's proxy.
#[test]
fn a_late_add_after_del_and_ip_reuse_cannot_take_the_address_back() {
    let node = TestNode::new("ns-reuse");
    let (a, b, _client_a, client_b) = two_injected_pods_on_one_address(&node);
    assert!(meshlane_net1(&node, &a, "ADD").status.success());
    assert!(meshlane_net1(&node, &a, "DEL").status.success());
    assert_eq!(steered_for(&node), None);
    assert!(meshlane_net1(&node, &b, "ADD").status.success());
    assert_eq!(steered_for(&node), Some(b.netns_cookie()));

    let envoy_b = b.start_envoy(EnvoyOptions::new().with_inbound());
    let _app_b = ProbeServer::start(&b.place(), APP_PORT, "app-b");
    assert_eq!(call(&client_b, "first").as_deref(), Ok("app-b"));
    envoy_b.wait_for_access_log(1, LOG_WAIT);

    let late = meshlane_net1(&node, &a, "ADD");
    assert_eq!(
        late.error().map(|e| e.code),
        Some(7),
        "the late ADD must fail: {late:?}"
    );
    assert_eq!(steered_for(&node), Some(b.netns_cookie()));
    assert_eq!(call(&client_b, "second").as_deref(), Ok("app-b"));
    let log = envoy_b.wait_for_access_log(2, LOG_WAIT);
    assert_eq!(log.len(), 2, "B's proxy must see both calls: {log:?}");
}

/// Once A's netns is gone (its DEL never came), its address may be reused.
#[test]
fn the_address_of_a_pod_whose_netns_is_gone_can_be_reused() {
    let node = TestNode::new("ns-gone");
    let (mut a, b, _client_a, _client_b) = two_injected_pods_on_one_address(&node);
    assert!(meshlane_net1(&node, &a, "ADD").status.success());
    let cookie_a = a.netns_cookie();
    a.remove_netns();
    // The kernel destroys a netns asynchronously, once nothing holds it.
    let destroyed = || !netns_alive(&node.pin_layout(), cookie_a);
    assert!(
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(50),
            destroyed
        ),
        "A's netns was never destroyed"
    );
    let add = meshlane_net1(&node, &b, "ADD");
    assert!(add.status.success(), "{add:?}");
    assert_eq!(steered_for(&node), Some(b.netns_cookie()));
}

//! Map capacity: the BPF maps are node-wide, so a pod's lists have per-pod caps
//! (policy::annotations::limits), and every map that can still fill fails closed —
//! a refused ADD that leaves nothing behind, or a refused connect — never a pod
//! whose traffic escapes its sidecar. docs/reliability.md ("Map capacity").
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::connect_variants;
use common::timing::wait_until;
use common::{Connect, EnvoyOptions, Identity, Pod, PodOptions, ProbeServer, TestNode};
use meshlane::datapath::abi::{
    ml_addr, ml_conn_key, ml_orig_dst, ml_pod, ml_port_key, ml_short_key, MapBytes,
};
use meshlane::datapath::names::maps;
use meshlane::datapath::pinned_map::PinnedMap;
use meshlane::datapath::pod_record::cidr_key;
use meshlane::policy::annotations::limits;
use meshlane::policy::Cidr;

const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
/// Filler entries belong to no netns: cookies start at 1 and count up.
const FILLER_COOKIE: u64 = u64::MAX - 7;
const SERVER_PORT: u16 = 8080;
/// CNI code 7 (invalid configuration) and meshlane's 102 (pod state).
const INVALID_CONFIG: u64 = 7;
const POD_STATE: u64 = 102;

fn port_list(count: usize) -> String {
    (1..=count)
        .map(|port| port.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn map(node: &TestNode, name: &'static str) -> PinnedMap {
    PinnedMap::open(&node.pin_layout(), name).expect("meshlane's maps are pinned")
}

/// The failed ADD left no record of the pod: no entry of any map names its netns,
/// no attachment has its container ID; a DEL then succeeds (the runtime's cleanup).
fn assert_nothing_left(node: &TestNode, pod: &mut Pod) {
    let pod_maps = node.maps();
    assert_eq!(
        pod_maps.entries_of(pod.netns_cookie()).unwrap(),
        0,
        "entries left for the refused pod"
    );
    let attachments = pod_maps.attachments().unwrap();
    assert!(
        attachments
            .iter()
            .all(|a| a.key.container_id != pod.container_id()),
        "attachment left: {attachments:?}"
    );
    let del = pod.try_del();
    assert!(del.succeeded(), "{}", del.describe());
}

/// Fills map `full` with filler entries (`key(i)` → `value`, at most `at_most`)
/// until it refuses one; the ADD of `pod` with `annotation` then fails with code
/// 102 naming the map and leaves nothing behind. The filler is taken out again.
fn assert_refused_while_full<K: MapBytes>(
    node: &TestNode,
    full: &'static str,
    key: impl Fn(u32) -> K,
    value: &[u8],
    at_most: u32,
    pod: &str,
    annotation: (&str, &str),
) {
    let map = map(node, full);
    let filled = fill(|i| map.put_raw(&key(i), value).is_ok(), at_most);
    let mut pod = node.try_add_pod(
        pod,
        PodOptions::new()
            .injected()
            .annotation(annotation.0, annotation.1),
    );
    let (code, msg) = pod.meshlane_add_error();
    assert_eq!(code, POD_STATE, "{msg}");
    assert!(msg.contains(full), "{msg}");
    assert_nothing_left(node, &mut pod);
    for i in 0..filled {
        map.delete(&key(i)).unwrap();
    }
}

/// Puts filler entries until the map refuses one; returns how many went in.
fn fill(mut put: impl FnMut(u32) -> bool, at_most: u32) -> u32 {
    let mut count = 0;
    while count <= at_most && put(count) {
        count += 1;
    }
    assert!(count <= at_most, "the map never filled up");
    count
}

#[test]
fn lists_over_a_per_pod_cap_are_refused_with_code_7_leaving_nothing() {
    let node = TestNode::new("cap-lists");
    let _first = node.add_pod("first", PodOptions::new().injected());
    let cases = [
        (
            INCLUDE_INBOUND_PORTS,
            port_list(limits::PORTS_PER_ANNOTATION + 1),
            limits::PORTS_PER_ANNOTATION,
        ),
        (
            EXCLUDE_OUTBOUND_IP_RANGES,
            (0..=limits::CIDRS_PER_ANNOTATION)
                .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
                .collect::<Vec<_>>()
                .join(","),
            limits::CIDRS_PER_ANNOTATION,
        ),
    ];
    for (i, (annotation, value, cap)) in cases.into_iter().enumerate() {
        let mut pod = node.try_add_pod(
            &format!("big{i}"),
            PodOptions::new().injected().annotation(annotation, &value),
        );
        let (code, msg) = pod.meshlane_add_error();
        assert_eq!(code, INVALID_CONFIG, "{msg}");
        assert!(msg.contains(annotation), "{msg}");
        assert!(msg.contains(&format!("limit of {cap} per pod")), "{msg}");
        assert_nothing_left(&node, &mut pod);
    }
    // At the cap, the pod is set up.
    node.add_pod(
        "atcap",
        PodOptions::new().injected().annotation(
            INCLUDE_INBOUND_PORTS,
            &port_list(limits::PORTS_PER_ANNOTATION),
        ),
    );
}

#[test]
fn full_rule_maps_fail_the_add_closed_and_leave_nothing() {
    let node = TestNode::new("cap-full");
    let _first = node.add_pod("first", PodOptions::new().injected());

    // ml_port_rules: fill it, an ADD needing port entries fails and adds none.
    let port_filler = |i: u32| ml_port_key {
        netns_cookie: FILLER_COOKIE - u64::from(i / 65_535),
        port: (i % 65_535 + 1) as u16,
        list: 1,
        ..Default::default()
    };
    assert_refused_while_full(
        &node,
        maps::PORT_RULES,
        port_filler,
        &[1],
        1 << 17,
        "ports",
        (EXCLUDE_OUTBOUND_PORTS, "3306,5432"),
    );

    // An exclude-range trie: the same.
    let cidr_filler = |i: u32| {
        let cidr: Cidr = format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff)
            .parse()
            .unwrap();
        cidr_key(FILLER_COOKIE - u64::from(i >> 16), &cidr)
    };
    assert_refused_while_full(
        &node,
        maps::OUT_EXCLUDE_CIDRS,
        cidr_filler,
        &[1],
        1 << 17,
        "ranges",
        (EXCLUDE_OUTBOUND_IP_RANGES, "192.0.2.0/24"),
    );

    // ml_pods: no room for the pod record, which is written last: its list
    // entries are taken back.
    assert_refused_while_full(
        &node,
        maps::PODS,
        |i| FILLER_COOKIE - u64::from(i),
        ml_pod::default().as_bytes(),
        1 << 14,
        "record",
        (EXCLUDE_OUTBOUND_PORTS, "3306,5432"),
    );

    // Room again: the next ADD succeeds.
    node.add_pod(
        "after",
        PodOptions::new()
            .injected()
            .annotation(EXCLUDE_OUTBOUND_PORTS, "3306,5432"),
    );
}

/// Pod `a`, captured, with a proxy stand-in on 127.0.0.1:15001 ("proxy"), and pod
/// `b` outside the mesh.
fn captured_with_proxy(node: &TestNode) -> (Pod<'_>, Pod<'_>, ProbeServer) {
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new());
    let proxy = ProbeServer::original_dst(&a.place(), "127.0.0.1", 15001, "proxy").start();
    (a, b, proxy)
}

/// The key of filler connection `i` (of the filler pod, from 10.`net`.x.y to
/// the proxy port), distinct for every `i`.
fn filler_conn(net: u8, i: u32) -> ml_conn_key {
    ml_conn_key {
        netns_cookie: FILLER_COOKIE,
        src: ml_addr::from_ip(IpAddr::from([10, net, (i >> 16) as u8, (i >> 8) as u8])),
        dst: ml_addr::from_ip(IpAddr::from([127, 0, 0, 1])),
        sport: i as u16,
        dport: 15001,
        ..Default::default()
    }
}

/// Socket storage has no fixed size; what can run out is the memory a socket may
/// charge for it (net.core.optmem_max, node-wide before 6.9). The tool spends that
/// budget on TCP MD5 keys first: a captured connect that cannot remember its
/// destination is refused, never let through to the server.
#[test]
fn a_connect_whose_destination_cannot_be_stored_is_refused() {
    let node = TestNode::new("cap-skstore");
    let (a, b, _proxy) = captured_with_proxy(&node);
    let _server = ProbeServer::start(&b.place(), SERVER_PORT, "b");
    let destination = SocketAddr::new(IpAddr::from(b.ipv4()), SERVER_PORT);

    let refused = connect_variants::connect(
        &a.place(),
        Identity::APP,
        "omem-full",
        destination,
        "no-room",
    );
    assert!(!refused.ok && refused.reply.is_none(), "{}", refused.raw);
    assert_eq!(refused.error.as_deref(), Some("EPERM"), "{}", refused.raw);
    assert_eq!(node.counter("record_failed"), 1);

    // The same connect from a socket with room reaches the proxy.
    let reply = connect_variants::connect(&a.place(), Identity::APP, "plain", destination, "room")
        .expect_reply();
    assert_eq!(reply.name, "proxy");
    assert_eq!(reply.original_dst, Some(destination.to_string()));
}

/// ml_conn_orig_dst is an LRU map: full of records (here, of connections that
/// never closed), it evicts the oldest, and a new connection still gets its own.
#[test]
fn a_full_original_destination_map_evicts_the_oldest_and_new_connects_keep_theirs() {
    let node = TestNode::new("cap-lru");
    let (a, b, _proxy) = captured_with_proxy(&node);
    let conns = map(&node, maps::CONN_ORIG_DST);
    let capacity = 262_144u32;
    let filler = |i| filler_conn(255, i);
    let orig = ml_orig_dst::default();
    for i in 0..capacity {
        conns.put(&filler(i), &orig).unwrap();
    }
    for i in 0..3u16 {
        let destination = SocketAddr::new(IpAddr::from(b.ipv4()), SERVER_PORT + i);
        let reply = Connect::to(destination)
            .identity(Identity::APP)
            .expect_reply(&a.place());
        assert_eq!(reply.name, "proxy");
        assert_eq!(
            reply.original_dst,
            Some(destination.to_string()),
            "a captured connect in a full LRU map"
        );
    }
    assert_eq!(node.counter("conn_publish_failed"), 0);
    let entries = conns.keys::<ml_conn_key>().unwrap().len();
    assert!(entries <= capacity as usize, "{entries} entries");
}

/// The proxy's accepted socket copies the original destination at the end of the
/// handshake: a record evicted while the connection waits in the proxy's backlog
/// does not change what the proxy reads.
#[test]
fn a_record_evicted_while_the_proxy_has_not_accepted_is_still_answered() {
    let node = TestNode::new("cap-evict");
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new());
    let _proxy = ProbeServer::original_dst(&a.place(), "127.0.0.1", 15001, "proxy")
        .accept_after(Duration::from_secs(4))
        .start();
    let conns = map(&node, maps::CONN_ORIG_DST);
    let cookie = a.netns_cookie();
    let records_of_a = || {
        conns
            .keys::<ml_conn_key>()
            .unwrap()
            .iter()
            .filter(|key| key.netns_cookie == cookie)
            .count()
    };
    let destination = SocketAddr::new(IpAddr::from(b.ipv4()), SERVER_PORT);
    std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            Connect::to(destination)
                .identity(Identity::APP)
                .timeout(Duration::from_secs(30))
                .run(&a.place())
        });
        // Wait (by state, not by time) until the connection is established in
        // the proxy's backlog: its record is published and the handshake is done.
        let established = || {
            let listed = a
                .command("ss")
                .args(["-Htn", "state", "established", "( sport = :15001 )"])
                .run()
                .stdout;
            records_of_a() == 1 && !listed.trim().is_empty()
        };
        assert!(
            wait_until(
                Duration::from_secs(20),
                Duration::from_millis(20),
                established
            ),
            "never established"
        );
        let filler = |i| filler_conn(254, i);
        for i in 0..2 * 262_144u32 {
            conns.put(&filler(i), &ml_orig_dst::default()).unwrap();
        }
        // Which entry an LRU map gives up is the kernel's choice: one that a
        // program looked up lately sits on its active list and outlives any
        // number of never-read fillers (seen under load). The promise is about
        // a record that is gone, so a survivor is removed as eviction would.
        for key in conns.keys::<ml_conn_key>().unwrap() {
            if key.netns_cookie == cookie {
                eprintln!("the record survived the fill (active LRU list); removing it");
                conns.delete(&key).unwrap();
            }
        }
        assert_eq!(records_of_a(), 0, "the connection's record is still there");
        let outcome = client.join().unwrap();
        let reply = outcome.expect_reply();
        assert_eq!(reply.name, "proxy");
        assert_eq!(
            reply.original_dst,
            Some(destination.to_string()),
            "the proxy lost the destination of an evicted record"
        );
    });
}

/// 16 inbound listener slots per pod and family: a 17th SO_REUSEPORT worker is
/// counted and not registered, and inbound connections still reach the proxy.
#[test]
fn a_worker_beyond_the_listener_slots_is_counted_and_inbound_stays_captured() {
    let node = TestNode::new("cap-slots");
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new());
    let _app = ProbeServer::start(&a.place(), SERVER_PORT, "app");
    let _workers: Vec<ProbeServer> = (0..17)
        .map(|i| {
            ProbeServer::original_dst(&a.place(), "0.0.0.0", 15006, &format!("w{i}"))
                .reuseport()
                .start()
        })
        .collect();
    assert_eq!(node.counter("inbound_listener_registered"), 16);
    assert_eq!(node.counter("inbound_listener_slots_full"), 1);
    let destination = SocketAddr::new(IpAddr::from(a.ipv4()), SERVER_PORT);
    for _ in 0..8 {
        let reply = Connect::to(destination).expect_reply(&b.place());
        assert!(reply.name.starts_with('w'), "inbound escaped: {reply:?}");
        assert_eq!(reply.original_dst, Some(destination.to_string()));
    }
}

/// The short path's receiving sockhash full (262,144 sockets): the sidecars'
/// sockets find no room there, are counted, and their connections stay on TCP,
/// bytes intact. It is filled with one loopback socket of the test's own under every
/// key (ml_short_rx has no program, so it takes a socket many times; ml_short_tx,
/// whose sk_msg program a socket can carry once, would need 262,144 sockets).
#[test]
fn a_full_short_path_map_leaves_the_sidecars_on_tcp() {
    let node = TestNode::builder("cap-short").short_path().build();
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new().injected());
    let _envoy_a = a.start_envoy(EnvoyOptions::new());
    let _envoy_b = b.start_envoy(EnvoyOptions::new().with_inbound());
    let _app = ProbeServer::start(&b.place(), SERVER_PORT, "app-b");

    let _full = FullSockhash::fill(map(&node, maps::SHORT_RX));
    let destination = SocketAddr::new(IpAddr::from(b.ipv4()), SERVER_PORT);
    for i in 0..4 {
        let text = format!("over-tcp-{i}");
        let reply = Connect::to(destination)
            .send(&text)
            .identity(Identity::APP)
            .expect_reply(&a.place());
        assert_eq!(reply.name, "app-b");
        assert_eq!(reply.got, text, "bytes changed on the way");
    }
    assert!(
        node.counter("short_path_insert_failed") >= 4,
        "{:?}",
        node.counters()
    );
    assert_eq!(node.counter("short_path_rx_sockets"), 0);
    assert_eq!(node.counter("short_path_redirected_messages"), 0);
}

/// A sockhash filled to its 262,144 entries with one loopback socket of the
/// test's own (an established connection in the test's netns, no pod's) under
/// every key. On drop the keys go first, in the order they were added: the kernel
/// then finds each link at once, while closing a socket with all its links still
/// there takes minutes.
struct FullSockhash {
    sockhash: PinnedMap,
    socket: Option<std::net::TcpStream>,
    /// The other end, kept open: a reset would take the socket out of the map.
    _peer: (std::net::TcpListener, std::net::TcpStream),
}

impl FullSockhash {
    const CAPACITY: u32 = 262_144;

    fn key(i: u32) -> ml_short_key {
        ml_short_key {
            netns_cookie: FILLER_COOKIE,
            local_port: (i >> 16) as u16,
            remote_port: i as u16,
            ..Default::default()
        }
    }

    fn fill(sockhash: PinnedMap) -> Self {
        use std::os::fd::AsRawFd;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let fd = u64::try_from(socket.as_raw_fd()).unwrap();
        let full = FullSockhash {
            sockhash,
            socket: Some(socket),
            _peer: (listener, accepted),
        };
        for i in 0..Self::CAPACITY {
            full.sockhash
                .put_raw(&Self::key(i), &fd.to_ne_bytes())
                .unwrap_or_else(|err| panic!("filling the sockhash at {i}: {err}"));
        }
        // The map refuses one more.
        let over = full
            .sockhash
            .put_raw(&Self::key(Self::CAPACITY), &fd.to_ne_bytes());
        assert!(over.is_err(), "the sockhash took more than its capacity");
        full
    }
}

impl Drop for FullSockhash {
    fn drop(&mut self) {
        for i in 0..Self::CAPACITY {
            let _ = self.sockhash.delete(&Self::key(i));
        }
        drop(self.socket.take());
    }
}

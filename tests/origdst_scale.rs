//! Thousands of redirected connections open at once on one node, each with an
//! original destination of its own: the CI-sized variant of the 100,000-connection
//! run (`bench/scale.py`, docs/reliability.md, "Scale"). Two captured pods each hold
//! 2,500 connections to 2,500 distinct destinations; a minimal sidecar in each pod
//! (tests/tools/origdst_load.c) reads `SO_ORIGINAL_DST` of every accepted connection
//! and answers with it, and the client checks every answer.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::Ipv4Addr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::origdst_load::{HeldConnections, LoadProxy};
use common::timing::scaled;
use common::{PodOptions, TestNode};

const PODS: u8 = 2;
const PER_POD: u64 = 2_500;
/// Destinations: 198.18.<pod>.0 + i / 100, port 20000 + i % 100 (nothing listens
/// there, and the node netns has no route out: an escaped connect fails).
const PORTS_PER_ADDRESS: u32 = 100;
const PORT_BASE: u16 = 20_000;

/// Counters that move when a map has no room (or a record went missing): the
/// connect refused, the record not published, the proxy's lookup missed, a socket
/// left off the short path, an inbound listener not registered.
const FULL_MAP_COUNTERS: [&str; 5] = [
    "record_failed",
    "conn_publish_failed",
    "orig_dst_missed",
    "short_path_insert_failed",
    "inbound_listener_slots_full",
];

fn counter_deltas(node: &TestNode, before: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
    node.counters()
        .into_iter()
        .zip(before)
        .map(|((name, now), (_, then))| (name, now - then))
        .collect()
}

fn delta(deltas: &[(&'static str, u64)], name: &str) -> u64 {
    deltas
        .iter()
        .find(|(counter, _)| *counter == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

#[test]
fn five_thousand_connections_held_at_once_each_reach_the_sidecar_with_their_own_destination() {
    let node = TestNode::new("origdst-scale");
    let pods: Vec<_> = (0..PODS)
        .map(|i| node.add_pod(&format!("c{i}"), PodOptions::new().injected()))
        .collect();
    let mut proxies: Vec<LoadProxy> = pods
        .iter()
        .map(|pod| LoadProxy::start(&pod.place(), &format!("sidecar-{}", pod.name())))
        .collect();
    let maps = node.maps();
    let idle: Vec<usize> = pods
        .iter()
        .map(|pod| maps.entries_of(pod.netns_cookie()).unwrap())
        .collect();
    let before = node.counters();

    let held: Vec<HeldConnections> = pods
        .iter()
        .zip(0u8..)
        .map(|(pod, i)| {
            let base = Ipv4Addr::new(198, 18, i, 0);
            let sidecar = format!("sidecar-{}", pod.name());
            HeldConnections::open(
                &pod.place(),
                PER_POD,
                (base, PORTS_PER_ADDRESS, PORT_BASE),
                &sidecar,
            )
        })
        .collect();

    // Every connection answered by its own pod's sidecar with its own destination.
    for (connections, pod) in held.iter().zip(&pods) {
        let report = &connections.report;
        assert_eq!(
            (report.ok, report.connections),
            (PER_POD, PER_POD),
            "pod {}: {report:?}",
            pod.name()
        );
    }
    // All of them open at once: each pod's sidecar holds them, and each has its
    // record in the original-destination map.
    for ((proxy, pod), idle) in proxies.iter_mut().zip(&pods).zip(&idle) {
        let counts = proxy.counts();
        assert_eq!(
            (counts.accepted, counts.matched, counts.open),
            (PER_POD, PER_POD, PER_POD),
            "sidecar of {}: {counts:?}\n{}",
            pod.name(),
            proxy.output()
        );
        assert_eq!(counts.mismatched + counts.no_original_dst, 0, "{counts:?}");
        let records = maps.entries_of(pod.netns_cookie()).unwrap() - idle;
        assert_eq!(
            records as u64,
            PER_POD,
            "connection records of {}",
            pod.name()
        );
    }
    let deltas = counter_deltas(&node, &before);
    let total = PER_POD * u64::from(PODS);
    for name in ["outbound_redirected", "conn_published", "orig_dst_answered"] {
        assert_eq!(delta(&deltas, name), total, "{name}: {deltas:?}");
    }
    for name in FULL_MAP_COUNTERS {
        assert_eq!(delta(&deltas, name), 0, "{name}: {deltas:?}");
    }

    // Closed: each record goes with its connecting socket.
    for connections in held {
        connections.close();
    }
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    for (pod, idle) in pods.iter().zip(&idle) {
        while maps.entries_of(pod.netns_cookie()).unwrap() != *idle {
            assert!(
                Instant::now() < deadline,
                "records of {} left after the close: {}",
                pod.name(),
                maps.entries_of(pod.netns_cookie()).unwrap() - idle
            );
            sleep(Duration::from_millis(50));
        }
    }
}

//! The kernel check: what must hold on every kernel meshlane supports, in one
//! short suite that CI runs on Debian 12's 6.1 kernel under qemu
//! (`scripts/kernels.sh --ci`, docs/kernels.md) and every test run runs on the
//! machine's own kernel:
//!
//! - meshlane's feature probes find every program type, helper and attach mode
//!   it needs, and sk_msg links exactly from 6.10 on;
//! - every program is loaded and attached the way this kernel allows (the
//!   short path's `sk_msg` through a link from 6.10 on, to its sockhash before),
//!   and each is replaced in place by an upgrade, that one included;
//! - a connection through Envoy each way, outbound (15001) and inbound (15006),
//!   with the original destination Envoy reads from `SO_ORIGINAL_DST`;
//! - the short path between the two sidecars, byte-exact both ways, no stall;
//! - nothing of a pod left in meshlane's maps and links after its DEL.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use libbpf_rs::Link;
use serde_json::Value;

use meshlane::datapath::cgroup::Cgroup;
use meshlane::datapath::features::{self, Presence};
use meshlane::datapath::inbound_link::linked_cookies;
use meshlane::datapath::loader::{pinned_link_cgroup, NODE_PROGRAMS, POD_PROGRAMS};
use meshlane::datapath::{upgrade_programs, Outcome, PinLayout, Target, UpgradeMode};

use common::kernel;
use common::prereq::{python, test_tool};
use common::timing::scaled;
use common::variant;
use common::{EnvoyOptions, Identity, PodOptions, Spawn, TestNode};

const APP_PORT: u16 = 8080;
const PAYLOAD_BYTES: u64 = 4 << 20;
/// The short path is proven only without stalls longer than this (docs/kernels.md).
const MAX_STALL_SECONDS: f64 = 2.0;

/// The program the kernel runs for sockets joining `ml_short_tx` (with an
/// sk_msg link it is the link's program).
fn program_on_short_tx(layout: &PinLayout) -> u32 {
    let ids = variant::programs_on_map(layout, "ml_short_tx");
    assert_eq!(ids.len(), 1, "one sk_msg program on ml_short_tx: {ids:?}");
    ids[0]
}

/// meshlane's probes find everything it needs on this kernel, and sk_msg links
/// exactly where the kernel's version says they exist; `meshlane precheck` agrees.
#[test]
fn the_feature_probes_find_what_this_kernel_has() {
    common::require_root();
    for feature in &features::REQUIRED {
        assert_eq!(
            features::probe(feature),
            Presence::Present,
            "{} on kernel {}",
            feature.name,
            kernel::release()
        );
    }
    let links = if kernel::has_sk_msg_links() {
        Presence::Present
    } else {
        Presence::Missing
    };
    assert_eq!(features::probe(&features::SK_MSG_LINK), links);

    let precheck = Command::new(env!("CARGO_BIN_EXE_meshlane"))
        .arg("precheck")
        .output()
        .expect("running meshlane precheck");
    let text = String::from_utf8_lossy(&precheck.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(features::SK_MSG_LINK.name))
        .unwrap_or_else(|| panic!("no sk_msg link line:\n{text}"));
    let expected = if kernel::has_sk_msg_links() {
        "pinned as a link"
    } else {
        "attached to the map instead"
    };
    assert!(line.contains(expected), "{line}");
    for feature in &features::REQUIRED {
        assert!(
            text.lines()
                .any(|l| l.starts_with("OK") && l.contains(feature.name)),
            "precheck does not say OK for {}:\n{text}",
            feature.name
        );
    }
}

#[test]
fn every_program_is_attached_and_replaced_in_place() {
    let node = TestNode::builder("kc-programs").short_path().build();
    let a = node.add_pod("a", PodOptions::new().injected());
    let layout = node.pin_layout();
    let cgroup = Cgroup::open(&node.layout().cgroup).expect("the node's cgroup");
    for program in NODE_PROGRAMS {
        assert_eq!(
            pinned_link_cgroup(&layout.link(program.link)),
            Some(cgroup.id),
            "{} is not linked to the node's cgroup",
            program.link
        );
    }
    for program in POD_PROGRAMS {
        assert!(layout.prog(program.pin).exists(), "{}", program.pin);
    }
    assert_eq!(linked_cookies(&layout), vec![a.netns_cookie()]);
    // Through a link, or the fallback of kernels before 6.10, and what runs on them.
    kernel::assert_sk_msg_attached_as_the_kernel_allows(&layout);
    let sk_msg_target = kernel::sk_msg_target();
    let sk_msg_before = program_on_short_tx(&layout);

    let report = upgrade_programs(&layout, UpgradeMode::ForceEvenIfIdentical)
        .expect("replacing every program");
    // The node's links, the short path's program, the pod program's pin and the
    // pod's sk_lookup link.
    assert_eq!(
        report.programs.len(),
        NODE_PROGRAMS.len() + 1 + POD_PROGRAMS.len() + 1,
        "{report:#?}"
    );
    for entry in &report.programs {
        assert_eq!(entry.outcome, Outcome::Replaced, "{entry:?}");
        assert_ne!(entry.old_id, entry.new_id, "{entry:?}");
    }
    for program in NODE_PROGRAMS {
        let info = Link::open(layout.link(program.link))
            .and_then(|link| link.info())
            .expect("the link is still pinned");
        let entry = report
            .programs
            .iter()
            .find(|e| e.target == Target::Link(program.link))
            .unwrap_or_else(|| panic!("{} is not in the report", program.link));
        assert_eq!(Some(info.id), entry.link_id, "{}: a new link", program.link);
        assert_eq!(info.prog_id, entry.new_id, "{}", program.link);
    }
    let sk_msg = report
        .programs
        .iter()
        .find(|e| e.target == sk_msg_target)
        .unwrap_or_else(|| panic!("no {sk_msg_target} in {report:#?}"));
    assert_eq!(sk_msg.old_id, sk_msg_before);
    assert_eq!(program_on_short_tx(&layout), sk_msg.new_id);
    // The pod is still captured, as CHECK sees it.
    a.check();
}

#[test]
fn envoy_both_ways_and_the_short_path_byte_exact_then_nothing_left_after_del() {
    let node = TestNode::builder("kc-traffic").short_path().build();
    let layout = node.pin_layout();
    let mut a = node.add_pod("a", PodOptions::new().injected());
    let mut b = node.add_pod("b", PodOptions::new().injected());
    let cookies = [a.netns_cookie(), b.netns_cookie()];
    {
        let envoy_a = a.start_envoy(EnvoyOptions::new());
        let envoy_b = b.start_envoy(EnvoyOptions::new().with_inbound());
        let mut server = Spawn::new(&b.place(), python())
            .arg(test_tool("stream.py"))
            .args(["serve", "--host", "::", "--port", &APP_PORT.to_string()])
            .arg("--echo")
            .spawn();
        server.wait_for_line("READY", scaled(Duration::from_secs(10)));
        let destination = SocketAddr::new(b.ipv4().into(), APP_PORT);

        let sent = Spawn::new(&a.place(), python())
            .arg(test_tool("stream.py"))
            .args(["send", "--to", &destination.to_string()])
            .args(["--bytes", &PAYLOAD_BYTES.to_string(), "--expect-echo"])
            .identity(Identity::APP)
            .timeout(scaled(Duration::from_secs(120)))
            .run();
        let report: Value = serde_json::from_str(sent.stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|err| panic!("stream.py send: {err}: {sent:?}"));
        let result = &report["results"][0];
        assert_eq!(result["error"], Value::Null, "{result}");
        assert_eq!(result["sent"], PAYLOAD_BYTES, "{result}");
        assert_eq!(result["echo_bytes"], PAYLOAD_BYTES, "{result}");
        assert_eq!(result["echo_ok"], true, "bytes changed: {result}");
        let stall = result["longest_stall_s"].as_f64().expect("longest_stall_s");
        assert!(stall <= MAX_STALL_SECONDS, "stalled {stall} s: {result}");

        // Outbound: app A's connect went to Envoy A's 15001, which read B:8080
        // back from SO_ORIGINAL_DST and connected there.
        let out = envoy_a.wait_for_access_log(1, scaled(Duration::from_secs(10)));
        assert!(out[0].listener.starts_with("virtualOutbound"), "{out:?}");
        assert_eq!(out[0].downstream_local, destination.to_string(), "{out:?}");
        assert_eq!(out[0].upstream_host, destination.to_string(), "{out:?}");
        // Inbound: Envoy A's connection to B:8080 landed on Envoy B's 15006,
        // which read B:8080 from SO_ORIGINAL_DST too.
        let inbound = envoy_b.wait_for_access_log(1, scaled(Duration::from_secs(10)));
        assert!(
            inbound[0].listener.starts_with("virtualInbound"),
            "{inbound:?}"
        );
        assert_eq!(
            inbound[0].downstream_local,
            destination.to_string(),
            "{inbound:?}"
        );
        assert_eq!(inbound[0].bytes_received, PAYLOAD_BYTES, "{inbound:?}");
        // Envoy A ⇄ Envoy B on the short path: the payload both ways, but for
        // stretches backpressure may send over TCP.
        let redirected = node.counter("short_path_redirected_bytes");
        assert!(
            redirected >= PAYLOAD_BYTES,
            "{redirected} bytes redirected: {:?}",
            node.counters()
        );
        assert_eq!(node.counter("short_path_insert_failed"), 0);
    }

    a.del();
    b.del();
    let maps = node.maps();
    for cookie in cookies {
        assert_eq!(
            maps.entries_of(cookie).expect("maps readable"),
            0,
            "DEL left records of netns {cookie} behind"
        );
    }
    assert!(maps.pods().expect("pods").is_empty());
    assert!(maps.attachments().expect("attachments").is_empty());
    assert!(linked_cookies(&layout).is_empty(), "sk_lookup links left");
}

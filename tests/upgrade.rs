//! Upgrading the node's programs in place (issue 6, docs/upgrade.md): every hook
//! switches from the running program to this build's with `bpf_link_update` (or
//! `BPF_PROG_ATTACH` on the map, or an atomic re-pin), so capture never has a gap
//! and live connections — through real Envoy sidecars, on the short path too —
//! carry on byte for byte.
//!
//! Only one build is at hand, so a test makes a program differ honestly: it loads
//! the short path's object itself with another value of one of its `const
//! volatile` settings (what a new default in a new version would be) and swaps it
//! into the node; or it forces the replacement of identical programs. Which
//! program each hook runs is read here with libbpf-rs directly, not through the
//! code under test.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::{Link, MapCore, MapHandle, MapType, ProgramHandle};
use serde_json::Value;

use meshlane::datapath::abi::MapBytes;
use meshlane::datapath::inbound_link::linked_cookies;
use meshlane::datapath::loader::{ensure_attached_with, MapAttach, NODE_PROGRAMS};
use meshlane::datapath::{
    upgrade_programs, DatapathError, Outcome, PinLayout, PodMaps, Target, UpgradeMode,
    UpgradeReport,
};

use common::agent::{Agent, WAIT};
use common::kernel;
use common::prereq::{python, test_tool, CHILD_PATH};
use common::timing::{poll, wait_until};
use common::variant::{attach_variant_sk_msg, programs_on_map};
use common::{
    Connect, Envoy, EnvoyOptions, Identity, Place, PodOptions, ProbeServer, Spawn, TestNode,
    TestProcess,
};

/// Bytes each held connection sends (and gets back) per round.
const ROUND_BYTES: u64 = 2 << 20;

/// The short path's sk_msg hook as `hooks` names it: its link where the kernel
/// has sk_msg links (6.10+), else the program pinned as the marker of the map
/// that holds it.
fn sk_msg_hook() -> &'static str {
    if kernel::has_sk_msg_links() {
        "links/sk_msg"
    } else {
        "progs/sk_msg"
    }
}

// ---- what runs where, read without the code under test ----

/// Each hook, named as its pin under the root: (link id for links, program id).
type Hooks = BTreeMap<String, (Option<u32>, u32)>;

fn hooks(layout: &PinLayout) -> Hooks {
    let mut out = Hooks::new();
    let link = |path: PathBuf| {
        let info = Link::open(&path)
            .and_then(|link| link.info())
            .unwrap_or_else(|err| panic!("link {}: {err}", path.display()));
        (Some(info.id), info.prog_id)
    };
    let pinned = |path: PathBuf| {
        let prog = ProgramHandle::from_pinned_path(&path)
            .unwrap_or_else(|err| panic!("program {}: {err}", path.display()));
        (None, prog.id())
    };
    for program in NODE_PROGRAMS {
        out.insert(
            format!("links/{}", program.link),
            link(layout.link(program.link)),
        );
    }
    if layout.link("sk_msg").exists() {
        out.insert("links/sk_msg".into(), link(layout.link("sk_msg")));
    } else {
        out.insert("progs/sk_msg".into(), pinned(layout.prog("sk_msg")));
    }
    out.insert("progs/sk_lookup".into(), pinned(layout.prog("sk_lookup")));
    for cookie in linked_cookies(layout) {
        out.insert(
            format!("inbound/{cookie}"),
            link(layout.inbound_link(cookie)),
        );
    }
    out
}

fn program_is_loaded(id: u32) -> bool {
    ProgramHandle::from_prog_id(id).is_ok()
}

/// The kernel frees a program once nothing holds it (a moment after the last
/// reference goes).
fn wait_until_unloaded(id: u32) {
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || !program_is_loaded(id)),
        "program {id} is still loaded: something still holds it"
    );
}

/// Every pod record, byte for byte, by netns cookie.
fn pod_records(layout: &PinLayout) -> Vec<(u64, Vec<u8>)> {
    let pods = PodMaps::open(layout).unwrap().pods().unwrap();
    assert!(!pods.is_empty());
    pods.iter()
        .map(|(cookie, pod)| (*cookie, pod.as_bytes().to_vec()))
        .collect()
}

fn counters(node: &TestNode) -> BTreeMap<&'static str, u64> {
    node.counters().into_iter().collect()
}

/// The report's view agrees with what the kernel says before and after.
fn assert_report_matches(report: &UpgradeReport, before: &Hooks, after: &Hooks) {
    assert_eq!(
        report.programs.len(),
        before.len(),
        "every hook is in the report: {report:#?}"
    );
    for entry in &report.programs {
        let key = match &entry.target {
            Target::MapAttached { pin, .. } => format!("progs/{pin}"),
            other => other.to_string(),
        };
        let (link_before, prog_before) = before[&key];
        let (link_after, prog_after) = after[&key];
        assert_eq!(entry.old_id, prog_before, "{key}");
        assert_eq!(entry.new_id, prog_after, "{key}");
        assert_eq!(entry.link_id, link_before, "{key}");
        assert_eq!(link_after, link_before, "{key}: a link must keep its id");
        assert_eq!(
            entry.outcome == Outcome::Replaced,
            prog_after != prog_before,
            "{key}"
        );
    }
}

/// Upgrades in `mode`: the report and the hooks after it, the report checked
/// against them and against `before` (read by the caller just before).
fn upgrade_checked(
    layout: &PinLayout,
    mode: UpgradeMode,
    before: &Hooks,
) -> (UpgradeReport, Hooks) {
    let report =
        upgrade_programs(layout, mode).unwrap_or_else(|err| panic!("upgrade ({mode:?}): {err}"));
    let after = hooks(layout);
    assert_report_matches(&report, before, &after);
    (report, after)
}

// ---- a "previous version": the same code with another setting ----

/// Replaces the pin of `map` with a map of the same kind whose values are 8 bytes
/// longer: what a build with a changed map layout meets on the node. The programs
/// keep the map they were loaded with.
fn pin_map_of_another_layout(layout: &PinLayout, map: &str) {
    let path = layout.map(map);
    let pinned = MapHandle::from_pinned_path(&path).expect("pinned map");
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let mut other = MapHandle::create(
        pinned.map_type(),
        Some(map),
        pinned.key_size(),
        pinned.value_size() + 8,
        pinned.max_entries(),
        &opts,
    )
    .expect("creating the other map");
    assert_eq!(
        pinned.map_type(),
        MapType::LruHash,
        "the map this test uses"
    );
    fs::remove_file(&path).expect("unpinning");
    other.pin(&path).expect("pinning the other map");
}

// ---- processes ----

/// `stream.py serve --echo`: echoes what it reads; killed on drop.
fn echo_server(place: &Place, port: u16) -> TestProcess {
    let mut process = Spawn::new(place, python())
        .arg(test_tool("stream.py"))
        .args([
            "serve",
            "--host",
            "::",
            "--port",
            &port.to_string(),
            "--echo",
        ])
        .spawn();
    process.wait_for_line("READY", WAIT);
    process
}

/// A connection held open by `hold.py`, one round of echoed bytes per "go".
struct Held {
    process: TestProcess,
    what: &'static str,
}

impl Held {
    fn open(what: &'static str, place: &Place, to: impl ToString, go: &Path) -> Held {
        let process = Spawn::new(place, python())
            .arg(test_tool("hold.py"))
            .args(["--to", &to.to_string()])
            .args(["--bytes", &ROUND_BYTES.to_string(), "--rounds", "2"])
            .arg("--go")
            .arg(go)
            .identity(Identity::APP)
            .spawn();
        Held { process, what }
    }

    fn lines(&self) -> Vec<Value> {
        self.process.json_lines()
    }

    /// Waits for the line that has `key` equal to `value`.
    fn wait_for(&self, key: &str, value: Value) -> Value {
        let found = poll(Duration::from_secs(60), Duration::from_millis(50), || {
            self.lines().into_iter().find(|l| l[key] == value).ok_or(())
        });
        found.unwrap_or_else(|()| {
            panic!(
                "{}: no {key}={value} line: {}",
                self.what,
                self.process.output()
            )
        })
    }

    /// The report of round `i`, checked: every byte came back unchanged.
    fn round(&self, i: u64) -> Value {
        let line = self.wait_for("round", i.into());
        assert_eq!(line["error"], Value::Null, "{}: {line}", self.what);
        assert_eq!(line["sent"], ROUND_BYTES, "{}: {line}", self.what);
        assert_eq!(line["echoed"], ROUND_BYTES, "{}: {line}", self.what);
        assert_eq!(
            line["echo_ok"], true,
            "{}: bytes changed: {line}",
            self.what
        );
        line
    }
}

/// Lets every held connection run its next round.
fn go(dir: &Path, round: u32) {
    fs::write(dir.join(format!("go-{round}")), b"").expect("writing the go file");
}

fn listener_stat(envoy: &Envoy, port: u16, stat: &str) -> u64 {
    let name = format!("listener.0.0.0.0_{port}.{stat}");
    envoy
        .stat(&name)
        .unwrap_or_else(|| panic!("Envoy has no stat {name}"))
}

// ---- the tests ----

/// The central case: a pod with a real Envoy holds an outbound connection
/// (app → 15001 → a server pod), an inbound one (a caller → 15006 → the app) and
/// a sidecar-to-sidecar one on the short path (app A → Envoy A ⇄ Envoy B → app
/// B). Every program is replaced while they are open; they carry on byte for byte
/// in both directions, over the same sockets, and new connections are captured by
/// the new programs.
#[test]
fn a_forced_replacement_under_live_traffic_keeps_every_connection_and_the_capture() {
    let node = TestNode::builder("up-live").short_path().build();
    let layout = node.pin_layout();
    let a = node.add_pod("a", PodOptions::new().injected());
    let b = node.add_pod("b", PodOptions::new().injected());
    let server = node.add_pod("server", PodOptions::new());
    let envoy_a = a.start_envoy(EnvoyOptions::new().with_inbound());
    let envoy_b = b.start_envoy(EnvoyOptions::new().with_inbound());
    let _app_a = echo_server(&a.place(), 8080);
    let _app_b = echo_server(&b.place(), 8080);
    let _server_echo = echo_server(&server.place(), 9090);
    let go_dir = node.layout().work_dir.join("go");
    fs::create_dir(&go_dir).unwrap();
    fs::set_permissions(&go_dir, fs::Permissions::from_mode(0o755)).unwrap();

    let outbound_to = SocketAddr::new(server.ipv4().into(), 9090);
    let outbound = Held::open("outbound", &a.place(), outbound_to, &go_dir);
    let inbound = Held::open(
        "inbound",
        &node.outside_pods(),
        format!("{}:8080", a.ipv4()),
        &go_dir,
    );
    let redirected_before = counters(&node)["short_path_redirected_bytes"];
    let sidecars = Held::open(
        "sidecar-to-sidecar",
        &a.place(),
        format!("{}:8080", b.ipv4()),
        &go_dir,
    );

    // Round 0, before: each connection is where it should be.
    let connected = outbound.wait_for("connected", true.into());
    assert_eq!(
        connected["peer"],
        outbound_to.to_string(),
        "the app sees its destination"
    );
    assert!(
        connected["local"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "the app's socket is connected to its sidecar over loopback: {connected}"
    );
    for held in [&outbound, &inbound, &sidecars] {
        held.round(0);
    }
    let redirected_round_0 = counters(&node)["short_path_redirected_bytes"] - redirected_before;
    assert!(
        redirected_round_0 >= ROUND_BYTES,
        "the sidecars' connection is on the short path: {redirected_round_0} bytes redirected"
    );
    // Envoy A: the app's two connections on 15001 and the inbound one on 15006;
    // Envoy B: Envoy A's on 15006.
    let totals = |envoy: &Envoy, port| listener_stat(envoy, port, "downstream_cx_total");
    let before_totals = [
        totals(&envoy_a, 15001),
        totals(&envoy_a, 15006),
        totals(&envoy_b, 15006),
    ];
    assert_eq!(before_totals, [2, 1, 1]);
    let pods_before = pod_records(&layout);
    let counters_before = counters(&node);

    // Replace every program.
    let before = hooks(&layout);
    let old_sk_msg = before[sk_msg_hook()].1;
    let (report, after) = upgrade_checked(&layout, UpgradeMode::ForceEvenIfIdentical, &before);
    assert_eq!(
        report.replaced().count(),
        before.len(),
        "every program replaced: {report:#?}"
    );
    for (hook, (link, prog)) in &after {
        assert_ne!(*prog, before[hook].1, "{hook} runs the same program");
        assert_eq!(*link, before[hook].0, "{hook}: the link changed");
    }
    // Both pods' inbound links, the pinned pod program and the 11 node links.
    assert_eq!(before.len(), NODE_PROGRAMS.len() + 1 + 1 + 2);
    // The sidecars' sockets joined the sockhash before: they keep the sk_msg
    // program they got then, so it stays loaded while they live.
    assert!(
        program_is_loaded(old_sk_msg),
        "the old sk_msg program was freed under live short-path sockets"
    );

    // Round 1, after: the same connections, every byte back unchanged.
    let redirected_before_round_1 = counters(&node)["short_path_redirected_bytes"];
    go(&go_dir, 1);
    for held in [&outbound, &inbound, &sidecars] {
        held.round(1);
    }
    let redirected_round_1 =
        counters(&node)["short_path_redirected_bytes"] - redirected_before_round_1;
    assert!(
        redirected_round_1 >= ROUND_BYTES,
        "the sidecars' connection left the short path: {redirected_round_1} bytes redirected"
    );
    assert_eq!(
        [
            totals(&envoy_a, 15001),
            totals(&envoy_a, 15006),
            totals(&envoy_b, 15006)
        ],
        before_totals,
        "round 1 went over new connections"
    );
    for held in [&outbound, &inbound, &sidecars] {
        let done = held.wait_for("done", true.into());
        assert_eq!(done["eof"], true, "{}: {done}", held.what);
    }
    // Their sockets were what held the old sk_msg program.
    wait_until_unloaded(old_sk_msg);

    // Kept: the pod records and the counters (same maps).
    assert_eq!(pod_records(&layout), pods_before);
    let counters_after = counters(&node);
    for (name, value) in &counters_before {
        assert!(counters_after[name] >= *value, "{name} went back");
    }

    // New connections go through the new programs.
    let _server_probe = ProbeServer::start(&server.place(), 9091, "server");
    let new_outbound = SocketAddr::new(server.ipv4().into(), 9091);
    let (outcome, reply) = Connect::to(new_outbound)
        .send("after")
        .identity(Identity::APP)
        .expect_reply_from(&a.place(), "server");
    assert_ne!(
        outcome.local.map(|l| l.port()),
        Some(reply.peer.port()),
        "the new connection went straight to the server"
    );
    let _app_a_probe = ProbeServer::start(&a.place(), 8081, "app-a");
    let new_inbound = SocketAddr::new(a.ipv4().into(), 8081);
    let reply = Connect::to(new_inbound)
        .send("in")
        .expect_reply(&node.outside_pods());
    assert_eq!(
        reply.peer.ip(),
        "127.0.0.6".parse::<IpAddr>().unwrap(),
        "not via Envoy's 15006"
    );
    let short_sockets = counters(&node)["short_path_tx_sockets"];
    let _app_b_probe = ProbeServer::start(&b.place(), 8082, "app-b");
    let reply = Connect::to(SocketAddr::new(b.ipv4().into(), 8082))
        .send("sidecars")
        .identity(Identity::APP)
        .expect_reply(&a.place());
    assert_eq!(reply.name, "app-b");
    assert_eq!(
        counters(&node)["short_path_tx_sockets"] - short_sockets,
        2,
        "the new sidecar sockets did not join the short path"
    );

    // Envoy logs a connection when it closes: the held ones and the new ones.
    // SO_ORIGINAL_DST (outbound) and the kept local address (inbound) are right.
    let log = envoy_a.wait_for_access_log(6, WAIT);
    let logged = |listener: &str, local: SocketAddr| {
        log.iter()
            .any(|e| e.listener == listener && e.downstream_local == local.to_string())
    };
    assert!(logged("virtualOutbound", outbound_to), "{log:#?}");
    assert!(logged("virtualOutbound", new_outbound), "{log:#?}");
    assert!(
        logged("virtualInbound", SocketAddr::new(a.ipv4().into(), 8080)),
        "{log:#?}"
    );
    assert!(logged("virtualInbound", new_inbound), "{log:#?}");
    let held_entry = log
        .iter()
        .find(|e| e.downstream_local == outbound_to.to_string())
        .unwrap();
    assert_eq!(held_entry.bytes_received, 2 * ROUND_BYTES, "{held_entry:?}");
}

/// The path the agent takes: a fresh build of the same programs finds every one
/// current and switches nothing.
#[test]
fn identical_programs_are_left_alone() {
    let node = TestNode::new("up-same");
    let layout = node.pin_layout();
    let _a = node.add_pod("a", PodOptions::new().injected());
    let before = hooks(&layout);
    let (report, after) = upgrade_checked(&layout, UpgradeMode::WhatDiffers, &before);
    assert_eq!(after, before, "{report:#?}");
    assert_eq!(report.replaced().count(), 0, "{report:#?}");
    assert!(before.contains_key(sk_msg_hook()) && before.keys().any(|k| k.starts_with("inbound/")));
}

/// A program of a "previous version" (another default of one setting: same code,
/// same tag) is replaced, and only it, in place; a second run finds nothing to do.
#[test]
fn a_program_that_differs_is_replaced_and_only_it() {
    let node = TestNode::new("up-differs");
    let layout = node.pin_layout();
    let _a = node.add_pod("a", PodOptions::new().injected());
    let variant = attach_variant_sk_msg(&layout);
    let before = hooks(&layout);
    assert_eq!(before[sk_msg_hook()].1, variant);

    let (report, after) = upgrade_checked(&layout, UpgradeMode::WhatDiffers, &before);
    let replaced: Vec<_> = report.replaced().collect();
    assert_eq!(replaced.len(), 1, "{report:#?}");
    assert_eq!(replaced[0].target, kernel::sk_msg_target());
    assert_eq!(replaced[0].program, "ml_short_msg");
    assert_eq!(replaced[0].old_id, variant);
    assert_eq!(
        replaced[0].old_tag, replaced[0].new_tag,
        "the variant differs in its settings only"
    );
    wait_until_unloaded(variant);

    let again = upgrade_programs(&layout, UpgradeMode::WhatDiffers).expect("second upgrade");
    assert_eq!(again.replaced().count(), 0, "{again:#?}");
    assert_eq!(hooks(&layout), after);
}

/// The operator's view: `meshlane upgrade-programs` (and `--force`) on the command
/// line, and `meshlane status` showing the id and tag of what each hook runs.
#[test]
fn the_command_line_upgrades_and_status_shows_what_runs() {
    let node = TestNode::new("up-cli");
    let layout = node.pin_layout();
    let _a = node.add_pod("a", PodOptions::new().injected());
    let meshlane = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meshlane"))
            .args(args)
            .arg("--bpffs-root")
            .arg(node.pin_root())
            .env_clear()
            .env("PATH", CHILD_PATH)
            .output()
            .expect("running meshlane");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "meshlane {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let hook_count = hooks(&layout).len();

    let same = meshlane(&["upgrade-programs"]);
    assert!(
        same.contains(&format!("0 replaced, {hook_count} current")),
        "{same}"
    );
    let before = hooks(&layout);
    let forced = meshlane(&["upgrade-programs", "--force"]);
    assert!(
        forced.contains(&format!("{hook_count} replaced, 0 current")),
        "{forced}"
    );
    let after = hooks(&layout);
    for (hook, (_, prog)) in &after {
        // A map's program is shown as "map <map> (progs/<pin>)".
        let line = forced
            .lines()
            .find(|l| l.starts_with(hook.as_str()) || l.contains(&format!("({hook})")))
            .unwrap_or_else(|| panic!("no line for {hook}: {forced}"));
        assert!(
            line.contains(&format!("prog id {} -> {prog}", before[hook].1)),
            "{line}"
        );
    }

    let status = meshlane(&["status"]);
    for (hook, (_, prog)) in &after {
        let tag: String = ProgramHandle::from_prog_id(*prog)
            .unwrap()
            .tag()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let shown = status
            .lines()
            .any(|l| l.contains(&format!("prog id {prog} ")) && l.contains(&tag));
        assert!(
            shown,
            "status does not show {hook} (prog id {prog}, tag {tag}):\n{status}"
        );
    }
}

/// Kernels before 6.10 have no sk_msg links: the program sits on the map itself,
/// and is swapped by attaching the new one. New short-path sockets get it.
#[test]
fn without_sk_msg_links_the_program_on_the_map_is_swapped() {
    let node = TestNode::builder("up-legacy").short_path().build();
    let layout = node.pin_layout();
    ensure_attached_with(&layout, &node.layout().cgroup, MapAttach::ProgAttach)
        .expect("attaching without an sk_msg link");
    let a = node.add_pod(
        "a",
        PodOptions::new()
            .injected()
            .annotation("meshlane.io/short-path", "app"),
    );
    // A stand-in for the proxy: the app's socket and the one it accepts pair up.
    let mut proxy = Spawn::new(&a.place(), python())
        .arg(test_tool("stream.py"))
        .args(["serve", "--host", "127.0.0.1", "--port", "15001", "--echo"])
        .identity(Identity::PROXY)
        .spawn();
    proxy.wait_for_line("READY", WAIT);
    let send = || {
        let out = Spawn::new(&a.place(), python())
            .arg(test_tool("stream.py"))
            .args(["send", "--to", "10.250.1.1:1111", "--bytes", "1048576"])
            .arg("--expect-echo")
            .identity(Identity::APP)
            .run();
        let report: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|err| panic!("stream.py send: {err}: {out:?}"));
        report["results"][0].clone()
    };
    let first = send();
    assert_eq!(first["echo_ok"], true, "{first}");
    assert_eq!(
        first["tcp"]["data_segs_out"], 0,
        "not on the short path: {first}"
    );

    let before = hooks(&layout);
    assert!(!before.contains_key("links/sk_msg"));
    assert_eq!(
        programs_on_map(&layout, "ml_short_tx"),
        vec![before["progs/sk_msg"].1]
    );
    let (report, _) = upgrade_checked(&layout, UpgradeMode::ForceEvenIfIdentical, &before);
    let swapped = report
        .programs
        .iter()
        .find(|p| matches!(p.target, Target::MapAttached { .. }))
        .expect("the map's program is in the report");
    assert_eq!(swapped.outcome, Outcome::Replaced);
    assert_eq!(
        programs_on_map(&layout, "ml_short_tx"),
        vec![swapped.new_id],
        "the map runs the new program"
    );
    assert!(!layout.link("sk_msg").exists());

    let second = send();
    assert_eq!(second["echo_ok"], true, "{second}");
    assert_eq!(
        second["tcp"]["data_segs_out"], 0,
        "off the short path after the swap: {second}"
    );
}

/// A build whose map differs from the pinned one stops before it switches
/// anything — even forced — names the map, and the old programs keep capturing.
#[test]
fn a_changed_map_layout_is_refused_and_the_old_programs_keep_running() {
    let node = TestNode::new("up-maplayout");
    let layout = node.pin_layout();
    let a = node.add_pod("a", PodOptions::new().injected());
    let before = hooks(&layout);
    pin_map_of_another_layout(&layout, "ml_short_offers");

    let err = upgrade_programs(&layout, UpgradeMode::ForceEvenIfIdentical)
        .expect_err("a changed map must stop the upgrade");
    match &err {
        DatapathError::MapIncompatible { map, detail, .. } => {
            assert_eq!(map, "ml_short_offers");
            assert!(detail.contains("value size"), "{detail}");
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("migration"), "{err}");
    assert_eq!(hooks(&layout), before, "something was replaced");

    // Capture still works: a connect goes to the proxy, which reads the original
    // destination.
    let _proxy = ProbeServer::original_dst(&a.place(), "127.0.0.1", 15001, "proxy").start();
    let reply = Connect::to("10.250.1.1:1111")
        .identity(Identity::APP)
        .expect_reply(&a.place());
    assert_eq!(reply.name, "proxy");
    assert_eq!(reply.original_dst.as_deref(), Some("10.250.1.1:1111"));
}

/// A pod that went without a DEL leaves a link whose netns is gone (the kernel
/// detached it): it cannot be switched, and must not stop the upgrade of the rest.
#[test]
fn a_pod_link_whose_netns_is_gone_does_not_stop_the_upgrade() {
    let node = TestNode::new("up-gone");
    let layout = node.pin_layout();
    let _a = node.add_pod("a", PodOptions::new().injected());
    let mut b = node.add_pod("b", PodOptions::new().injected());
    let links_before: Vec<u64> = linked_cookies(&layout);
    b.remove_netns();
    // The kernel detaches the link when it cleans up the netns, a moment later.
    let defunct = poll(WAIT, Duration::from_millis(50), || {
        let gone: Vec<u64> = links_before
            .iter()
            .copied()
            .filter(|&cookie| {
                let info = Link::open(layout.inbound_link(cookie))
                    .and_then(|link| link.info())
                    .expect("link info");
                matches!(info.info, LinkTypeInfo::NetNs(ref netns) if netns.ino == 0)
            })
            .collect();
        match gone[..] {
            [cookie] => Ok(cookie),
            _ => Err(()),
        }
    });
    let gone = defunct.unwrap_or_else(|()| panic!("b's link still has its netns"));

    let before = hooks(&layout);
    // The upgrade must go past the defunct link.
    let (report, _) = upgrade_checked(&layout, UpgradeMode::ForceEvenIfIdentical, &before);
    for entry in &report.programs {
        let expected = if entry.target == Target::PodLink(gone) {
            Outcome::NetnsGone
        } else {
            Outcome::Replaced
        };
        assert_eq!(entry.outcome, expected, "{entry}");
    }
}

// ---- the agent ----

/// `meshlane install` on the test node's pins and cgroup, with its own CNI dirs.
fn start_agent(node: &TestNode, name: &str) -> Agent {
    let work = node.layout().work_dir.join(name);
    let (bin, net_d) = (work.join("bin"), work.join("net.d"));
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&net_d).unwrap();
    let primary = serde_json::to_string_pretty(&node.chain().conflist.to_json()).unwrap();
    fs::write(net_d.join("10-bridge.conflist"), primary).unwrap();
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let cgroup = path(&node.layout().cgroup);
    let args = [
        "install".to_owned(),
        "--cni-bin-dir".into(),
        path(&bin),
        "--cni-conf-dir".into(),
        path(&net_d),
        "--bpffs-root".into(),
        path(node.pin_root()),
        "--cgroup".into(),
        cgroup.clone(),
        "--plugin-cgroup-path".into(),
        cgroup,
        "--log-file".into(),
        path(&work.join("meshlane-cni.log")),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--recheck-seconds".into(),
        "1".into(),
    ];
    Agent::start(&node.layout().cgroup, &args, &[])
}

fn field<'l>(line: &'l str, key: &str) -> &'l str {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// The agent upgrades at start: with this build's programs attached it finds
/// all current; with a program of a "previous version" it replaces that one and
/// says so; with a map it cannot reuse it logs why, stays not ready, and the old
/// programs keep running.
#[test]
fn the_agent_upgrades_at_start_and_is_not_ready_while_it_cannot() {
    let node = TestNode::new("up-agent");
    let layout = node.pin_layout();
    let _a = node.add_pod("a", PodOptions::new().injected());
    let attached = hooks(&layout);

    let mut agent = start_agent(&node, "agent-same");
    let line = agent.wait_for_log("node programs are this version's");
    assert_eq!(field(&line, "replaced"), "0", "{line}");
    assert_eq!(
        field(&line, "current"),
        attached.len().to_string(),
        "{line}"
    );
    assert!(
        !agent.stderr.text().contains("program upgraded"),
        "{}",
        agent.stderr.text()
    );
    agent.wait_for_readiness(200);
    assert_eq!(hooks(&layout), attached);
    drop(agent);

    let variant = attach_variant_sk_msg(&layout);
    let mut agent = start_agent(&node, "agent-variant");
    let line = agent.wait_for_log("program upgraded");
    let target = meshlane::log::line::quote(&kernel::sk_msg_target().to_string());
    assert!(line.contains(&format!(" target={target} ")), "{line}");
    assert_eq!(field(&line, "program"), "ml_short_msg", "{line}");
    assert_eq!(field(&line, "old_id"), variant.to_string(), "{line}");
    let new_id: u32 = field(&line, "new_id").parse().unwrap();
    let summary = agent.wait_for_log("node programs are this version's");
    assert_eq!(field(&summary, "replaced"), "1", "{summary}");
    agent.wait_for_readiness(200);
    let upgraded = hooks(&layout);
    assert_eq!(upgraded[sk_msg_hook()], (attached[sk_msg_hook()].0, new_id));
    for (hook, ids) in &upgraded {
        if hook != sk_msg_hook() {
            assert_eq!(*ids, attached[hook], "{hook} was touched");
        }
    }
    drop(agent);

    // Something to replace (the variant), and a map this build cannot reuse.
    attach_variant_sk_msg(&layout);
    pin_map_of_another_layout(&layout, "ml_short_offers");
    let before = hooks(&layout);
    let mut agent = start_agent(&node, "agent-maplayout");
    let line = agent.wait_for_log("cannot upgrade the node programs");
    assert!(line.contains("ml_short_offers"), "{line}");
    let body = agent.wait_for_readiness(503);
    assert!(
        body.contains("program upgrade failed") && body.contains("ml_short_offers"),
        "{body}"
    );
    assert_eq!(hooks(&layout), before, "the agent replaced something");
}

/// Issue 15, item 4: a pod captured under `mesh: "kuma"` (kuma-dp: Envoy as 5678)
/// keeps Kuma's capture (docs/meshes.md) across a forced replacement of every
/// program: outbound through 15001 with its original destination, Kuma's default
/// excluded port 9901 (KO5) straight out, inbound through 15006 — before and after.
#[test]
fn a_kuma_pod_keeps_its_capture_across_a_forced_replacement() {
    let node = TestNode::builder("up-kuma")
        .meshlane_config(|_| serde_json::json!({"mesh": "kuma"}))
        .build();
    let layout = node.pin_layout();
    let a = node.add_pod("a", PodOptions::new().kuma_injected());
    let server = node.add_pod("server", PodOptions::new());
    let kuma_dp = Identity {
        uid: 5678,
        gid: 5678,
    };
    let envoy = a.start_envoy(EnvoyOptions::new().identity(kuma_dp).with_inbound());
    let _captured = ProbeServer::start(&server.place(), 9091, "server");
    let _excluded = ProbeServer::start(&server.place(), 9901, "server-9901");
    let _app = ProbeServer::start(&a.place(), 8081, "app-a");
    let captured_to = SocketAddr::new(server.ipv4().into(), 9091);
    let check = |round: usize| {
        let via_sidecar = |to: SocketAddr, name: &str| {
            let outcome = Connect::to(to)
                .send("out")
                .identity(Identity::APP)
                .run(&a.place());
            let reply = outcome.expect_reply();
            assert_eq!(reply.name, name);
            outcome.local.map(|l| l.port()) != Some(reply.peer.port())
        };
        assert!(
            via_sidecar(captured_to, "server"),
            "round {round}: not via 15001"
        );
        let excluded = SocketAddr::new(server.ipv4().into(), 9901);
        assert!(
            !via_sidecar(excluded, "server-9901"),
            "round {round}: 9901 captured"
        );
        let reply = Connect::to(SocketAddr::new(a.ipv4().into(), 8081))
            .send("in")
            .expect_reply(&node.outside_pods());
        assert_eq!(reply.name, "app-a");
        assert_eq!(
            reply.peer.ip(),
            "127.0.0.6".parse::<IpAddr>().unwrap(),
            "round {round}: not via Envoy's 15006"
        );
        // Envoy logs a connection when it closes; SO_ORIGINAL_DST worked for kuma-dp.
        let log = envoy.wait_for_access_log(2 * (round + 1), WAIT);
        let outbound = log
            .iter()
            .filter(|e| {
                e.listener.starts_with("virtualOutbound")
                    && e.downstream_local == captured_to.to_string()
            })
            .count();
        assert_eq!(outbound, round + 1, "{log:#?}");
    };
    check(0);
    let pods_before = pod_records(&layout);

    let before = hooks(&layout);
    let (report, after) = upgrade_checked(&layout, UpgradeMode::ForceEvenIfIdentical, &before);
    assert_eq!(report.replaced().count(), before.len(), "{report:#?}");
    for (hook, (_, prog)) in &after {
        assert_ne!(*prog, before[hook].1, "{hook} runs the same program");
    }
    assert_eq!(pod_records(&layout), pods_before);
    check(1);
}

//! The short path, for real (docs/shortpath.md): sockops puts paired local sockets
//! into sockhashes and sk_msg hands each message to the peer socket. Pods are
//! network namespaces on the bridge CNI, the sidecars are real Envoys (UID 1337),
//! and every payload is random and compared byte for byte (SHA-256) in both
//! directions: app A → Envoy A → Envoy B → app B and back.
//!
//! By default only the sidecars' sockets take the short path (Envoy A ⇄ Envoy B);
//! pods annotated `meshlane.io/short-path: "app"` add their app's sends to a
//! sidecar (app A → Envoy A, app B → Envoy B). That the short path is taken is
//! shown by meshlane's per-CPU counters and by the app's own socket: a handed-over
//! send never becomes a TCP data segment, so the app's TCP_INFO shows none.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use meshlane::datapath::abi::ml_pod_flag;
use meshlane::datapath::abi::ml_short_key;
use meshlane::datapath::loader::{
    ensure_attached_with, map_program_attachment, AttachOutcome, MapAttach, MapAttachment,
    MAP_PROGRAMS,
};
use meshlane::datapath::pinned_map::PinnedMap;
use meshlane::datapath::{PinLayout, PodMaps};
use meshlane::policy::short_path_kernels::PROVEN_SERIES;

use common::kernel;
use common::timing::{scaled, scaled_ms};
use common::{Envoy, EnvoyOptions, Identity, Place, Pod, PodOptions, Spawn, TestNode, TestProcess};

const APP_PORT: u16 = 8080;
const SHORT_PATH_ANNOTATION: &str = "meshlane.io/short-path";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_secs(10);

fn stream(place: &Place, identity: Identity) -> Spawn {
    Spawn::new(place, common::prereq::python())
        .arg(common::prereq::test_tool("stream.py"))
        .identity(identity)
}

/// How the stream server reads and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// Reads with recv, writes back what it reads as it reads it.
    Echo,
    /// Many partial reads (1-100 bytes), echoing.
    SmallReadsEcho,
    /// splice(2) from the socket into a pipe, echoing.
    SpliceEcho,
    /// Reads to EOF, then writes everything back (the peer half-closed).
    EchoAfterEof,
    /// Reads only.
    Sink,
}

/// `stream.py serve`; killed on drop.
struct StreamServer {
    process: TestProcess,
}

impl StreamServer {
    fn start(place: &Place, host: &str, port: u16, identity: Identity, how: Serve) -> Self {
        StreamServer::start_with(place, host, port, identity, how, &[])
    }

    /// With more of `stream.py serve`'s options.
    fn start_with(
        place: &Place,
        host: &str,
        port: u16,
        identity: Identity,
        how: Serve,
        extra: &[&str],
    ) -> Self {
        let mode: &[&str] = match how {
            Serve::Echo => &["--echo"],
            Serve::SmallReadsEcho => &["--read", "small", "--echo"],
            Serve::SpliceEcho => &["--read", "splice", "--echo"],
            Serve::EchoAfterEof => &["--echo-after-eof"],
            Serve::Sink => &[],
        };
        let mut process = stream(place, identity)
            .args(["serve", "--host", host, "--port", &port.to_string()])
            .args(mode.iter().copied())
            .args(extra.iter().copied())
            .spawn();
        process.wait_for_line("READY", scaled(READY_TIMEOUT));
        StreamServer { process }
    }

    /// The report of each finished connection so far.
    fn connections(&self) -> Vec<Value> {
        self.process.json_lines()
    }

    fn wait_for_connections(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + scaled(SETTLE);
        loop {
            let done = self.connections();
            if done.len() >= count {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "the server reported {} of {count} connections: {}",
                done.len(),
                self.process.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `stream.py send`, built then run at a place.
#[derive(Debug, Clone)]
struct Send {
    to: String,
    bytes: usize,
    connections: usize,
    chunk: String,
    sendfile: bool,
    expect_echo: bool,
    rst: bool,
    pause_ms: u32,
    seed: Option<u64>,
    identity: Identity,
}

/// What one connection of `Send` saw.
#[derive(Debug, Clone)]
struct Sent {
    sent: u64,
    sent_sha256: String,
    echo_ok: Option<bool>,
    echo_bytes: u64,
    error: Option<String>,
    /// The longest time the connection moved no byte either way, in seconds.
    longest_stall: f64,
    /// TCP_INFO of the client socket.
    data_segs_out: u64,
    data_segs_in: u64,
    raw: Value,
}

impl Send {
    fn to(to: impl ToString) -> Self {
        Send {
            to: to.to_string(),
            bytes: 1 << 20,
            connections: 1,
            chunk: "random".to_string(),
            sendfile: false,
            expect_echo: true,
            rst: false,
            pause_ms: 0,
            seed: None,
            identity: Identity::APP,
        }
    }

    fn bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }

    fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    fn chunk(mut self, chunk: &str) -> Self {
        self.chunk = chunk.to_string();
        self
    }

    fn sendfile(mut self) -> Self {
        self.sendfile = true;
        self
    }

    fn no_echo(mut self) -> Self {
        self.expect_echo = false;
        self
    }

    fn rst(mut self) -> Self {
        self.rst = true;
        self.expect_echo = false;
        self
    }

    fn pause_ms(mut self, pause: u32) -> Self {
        self.pause_ms = pause;
        self
    }

    /// Connection i sends the bytes of Python's `random.Random(seed + i)`.
    fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    fn run(&self, place: &Place) -> Vec<Sent> {
        let mut spawn = stream(place, self.identity)
            .args(["send", "--to", &self.to])
            .args(["--bytes", &self.bytes.to_string()])
            .args(["--connections", &self.connections.to_string()])
            .args(["--chunk", &self.chunk])
            .args(["--pause-ms", &self.pause_ms.to_string()])
            .timeout(scaled(Duration::from_secs(180)));
        if self.sendfile {
            spawn = spawn.args(["--write", "sendfile"]);
        }
        if self.expect_echo {
            spawn = spawn.arg("--expect-echo");
        }
        if self.rst {
            spawn = spawn.arg("--rst");
        }
        if let Some(seed) = self.seed {
            spawn = spawn.args(["--seed", &seed.to_string()]);
        }
        let finished = spawn.run();
        let line = finished.stdout.lines().last().unwrap_or_default();
        let report: Value = serde_json::from_str(line).unwrap_or_else(|err| {
            panic!(
                "stream.py send printed no JSON ({err}); status {}\nstdout: {}\nstderr: {}",
                finished.status, finished.stdout, finished.stderr
            )
        });
        report["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| Sent {
                sent: r["sent"].as_u64().unwrap_or(0),
                sent_sha256: r["sent_sha256"].as_str().unwrap_or_default().to_string(),
                echo_ok: r["echo_ok"].as_bool(),
                echo_bytes: r["echo_bytes"].as_u64().unwrap_or(0),
                error: r["error"].as_str().map(str::to_string),
                longest_stall: r["longest_stall_s"].as_f64().unwrap_or(f64::INFINITY),
                data_segs_out: r["tcp"]["data_segs_out"].as_u64().unwrap_or(u64::MAX),
                data_segs_in: r["tcp"]["data_segs_in"].as_u64().unwrap_or(u64::MAX),
                raw: r.clone(),
            })
            .collect()
    }
}

/// Sockets in a short-path sockhash right now.
fn sockets_in(node: &TestNode, map: &'static str) -> usize {
    PinnedMap::open(&PinLayout::new(node.pin_root()), map)
        .expect("map pinned")
        .keys::<ml_short_key>()
        .expect("keys readable")
        .len()
}

/// Waits until both sockhashes are empty: the kernel removes closed sockets.
fn wait_for_empty_maps(node: &TestNode) {
    wait_for_empty_maps_or_explain(node, String::new);
}

/// `wait_for_empty_maps`, adding `explain()` to the failure message.
fn wait_for_empty_maps_or_explain(node: &TestNode, explain: impl Fn() -> String) {
    let deadline = Instant::now() + scaled(SETTLE);
    loop {
        let (tx, rx) = (
            sockets_in(node, "ml_short_tx"),
            sockets_in(node, "ml_short_rx"),
        );
        if tx == 0 && rx == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "closed sockets are still in the short-path maps: {tx} in ml_short_tx, {rx} in ml_short_rx\n{}",
            explain()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A node with the short path switched on node-wide.
fn short_path_node(name: &str) -> TestNode {
    TestNode::builder(name).short_path().build()
}

fn opted_out() -> PodOptions {
    PodOptions::new()
        .injected()
        .annotation(SHORT_PATH_ANNOTATION, "false")
}

/// A pod whose app's own sends take the short path too.
fn with_app() -> PodOptions {
    PodOptions::new()
        .injected()
        .annotation(SHORT_PATH_ANNOTATION, "app")
}

/// Two captured pods with their sidecars (A calls, B's app echoes on 8080).
struct Mesh<'n> {
    a: Pod<'n>,
    b: Pod<'n>,
    envoy_a: Envoy,
    envoy_b: Envoy,
    app_b: StreamServer,
}

/// The mesh of most tests: both pods let their app onto the short path.
fn app_mesh(node: &TestNode, serve: Serve) -> Mesh<'_> {
    mesh(node, with_app(), with_app(), serve)
}

fn mesh(node: &TestNode, a: PodOptions, b: PodOptions, serve: Serve) -> Mesh<'_> {
    mesh_with(node, (a, b), EnvoyOptions::new, serve, &[])
}

/// `mesh` with each pod's sidecar started from `envoy()` (another mesh's proxy),
/// and app B with more of `stream.py serve`'s options.
fn mesh_with<'n>(
    node: &'n TestNode,
    (a, b): (PodOptions, PodOptions),
    envoy: impl Fn() -> EnvoyOptions,
    serve: Serve,
    app_b_options: &[&str],
) -> Mesh<'n> {
    let a = node.add_pod("a", a);
    let b = node.add_pod("b", b);
    let envoy_a = a.start_envoy(envoy());
    let envoy_b = b.start_envoy(envoy().with_inbound());
    let app_b = StreamServer::start_with(
        &b.place(),
        "::",
        APP_PORT,
        Identity::ROOT,
        serve,
        app_b_options,
    );
    Mesh {
        a,
        b,
        envoy_a,
        envoy_b,
        app_b,
    }
}

impl Mesh<'_> {
    /// A transfer from app A to app B's port on B's IPv4 address.
    fn send(&self) -> Send {
        Send::to(format!("{}:{APP_PORT}", self.b.ipv4()))
    }

    /// `bytes` from app A to app B, unanswered, 1 MiB at a time with short pauses:
    /// once a stalled reader has caught up, a pause lets TCP drain and the next
    /// megabyte goes over the short path again.
    fn send_in_megabytes(&self, bytes: usize) -> Send {
        self.send()
            .bytes(bytes)
            .chunk("1048576")
            .pause_ms(scaled_ms(20) as u32)
            .no_echo()
    }

    /// Runs `send` at app A; every connection got all its bytes back unchanged.
    fn echoed(&self, send: Send) -> Vec<Sent> {
        let results = send.run(&self.a.place());
        assert_all_echoed(&results, send.bytes as u64);
        results
    }

    /// `echoed`, and app B got every connection's bytes.
    fn echoed_by_app_b(&self, send: Send) -> Vec<Sent> {
        let results = self.echoed(send);
        assert_server_got(&self.app_b, &results);
        results
    }
}

/// A transfer that stops moving for longer than this has stalled: the short path
/// is proven on a kernel only without any (docs/kernels.md). Wall time, not scaled:
/// even a TCG guest moves a chunk in well under a second.
const MAX_STALL: Duration = Duration::from_secs(2);

fn assert_no_stall(results: &[Sent]) {
    // The evidence of docs/kernels.md: how close each transfer came.
    let longest = results.iter().map(|r| r.longest_stall).fold(0.0, f64::max);
    eprintln!(
        "longest stall {longest:.3} s over {} connection(s)",
        results.len()
    );
    for (i, r) in results.iter().enumerate() {
        assert!(
            r.longest_stall <= MAX_STALL.as_secs_f64(),
            "connection {i} stalled for {} s: {}",
            r.longest_stall,
            r.raw
        );
    }
}

fn assert_all_echoed(results: &[Sent], bytes: u64) {
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.error, None, "connection {i}: {}", r.raw);
        assert_eq!(r.sent, bytes, "connection {i}: {}", r.raw);
        assert_eq!(r.echo_bytes, bytes, "connection {i}: {}", r.raw);
        assert_eq!(
            r.echo_ok,
            Some(true),
            "connection {i}: bytes changed: {}",
            r.raw
        );
    }
    assert_no_stall(results);
}

/// Every connection's bytes arrived at the server unchanged (waits for them).
fn assert_server_got(server: &StreamServer, sent: &[Sent]) {
    assert_server_got_or_explain(server, sent, String::new);
}

/// What a stalled transfer leaves behind: the datapath's counters and every TCP
/// socket of the given places with its queues and state.
fn stall_report(node: &TestNode, places: &[Place]) -> String {
    let mut report = format!("counters: {:?}\n", node.counters());
    for place in places {
        let out = Spawn::new(place, "ss").args(["-tanieH"]).run();
        report.push_str(&format!("ss in {}:\n{}\n", place.label, out.stdout));
    }
    report
}

/// `assert_server_got`, adding `explain()` to the failure message.
fn assert_server_got_or_explain(
    server: &StreamServer,
    sent: &[Sent],
    explain: impl Fn() -> String,
) {
    let arrived = |got: &[Value], r: &Sent| {
        got.iter().any(|c| {
            c["sha256"] == r.sent_sha256.as_str() && c["bytes"] == r.sent && c["error"].is_null()
        })
    };
    let deadline = Instant::now() + scaled(SETTLE);
    loop {
        let got = server.connections();
        let missing: Vec<&Sent> = sent.iter().filter(|r| !arrived(&got, r)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no server connection got {} bytes with SHA-256 {}: {got:?}\n{}",
            missing[0].sent,
            missing[0].sent_sha256,
            explain()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The whole path both ways: app A → Envoy A (loopback) → Envoy B (pod to pod)
/// → app B (loopback), large random payloads in random chunks, several at once,
/// both pods letting their app in. Bulk streams meet backpressure (the sender is
/// faster than the proxy reads) and continue over TCP: every byte arrives all the
/// same.
fn large_payloads_both_ways(family: &str) {
    let node = TestNode::builder(&format!("sp-large-{family}"))
        .dual_stack()
        .short_path()
        .build();
    let m = app_mesh(&node, Serve::Echo);
    let to = match family {
        "v6" => format!("[{}]:{APP_PORT}", m.b.ipv6()),
        _ => format!("{}:{APP_PORT}", m.b.ipv4()),
    };
    let bytes = 16 << 20;
    m.echoed_by_app_b(Send::to(&to).bytes(bytes).connections(4));
    // Each connection: two app senders, and both Envoy ends sending and receiving.
    assert_short_path_joined(&node, 4 * 4);
    node.assert_counter_at_least("short_path_redirected_bytes", 4 * bytes as u64);
    assert_eq!(node.counter("short_path_peer_missing"), 0);
    assert_eq!(node.counter("short_path_insert_failed"), 0);
    let out = m.envoy_a.wait_for_access_log(4, scaled(SETTLE));
    assert!(
        out.iter().all(|e| e.bytes_received == bytes as u64),
        "{out:?}"
    );
    let inbound = m.envoy_b.wait_for_access_log(4, scaled(SETTLE));
    assert!(
        inbound.iter().all(|e| e.bytes_sent == bytes as u64),
        "{inbound:?}"
    );
    wait_for_empty_maps(&node);
}

/// Request/response, both pods letting their app in: every byte crosses every hop
/// over the short path (four hops, each byte exactly once), and the apps' sends
/// never become TCP segments.
#[test]
fn with_app_every_hop_takes_the_short_path() {
    let node = short_path_node("sp-every-hop");
    let m = app_mesh(&node, Serve::Echo);
    let bytes = 256 << 10;
    let results = m.echoed_by_app_b(m.send().bytes(bytes).connections(8));
    for r in &results {
        assert_eq!(
            r.data_segs_out, 0,
            "the app's data went over TCP: {}",
            r.raw
        );
        assert!(r.data_segs_in > 0, "the echo comes over TCP: {}", r.raw);
    }
    assert_short_path_carried(&node, 8 * 4, 4 * 8 * bytes as u64);
    wait_for_empty_maps(&node);
}

/// `sockets` sockets joined each short-path map.
fn assert_short_path_joined(node: &TestNode, sockets: u64) {
    assert_eq!(node.counter("short_path_tx_sockets"), sockets);
    assert_eq!(node.counter("short_path_rx_sockets"), sockets);
}

/// `sockets` sockets joined each short-path map, and exactly `bytes` were handed over.
fn assert_short_path_carried(node: &TestNode, sockets: u64, bytes: u64) {
    assert_short_path_joined(node, sockets);
    assert_eq!(
        node.counter("short_path_redirected_bytes"),
        bytes,
        "{:?}",
        node.counters()
    );
}

/// The default: Envoy A ⇄ Envoy B on the short path both ways, the apps' sockets
/// on TCP (an app may read with splice or block in recv, see docs/shortpath.md).
#[test]
fn by_default_the_sidecars_talk_over_the_short_path_and_the_apps_over_tcp() {
    let node = short_path_node("sp-default");
    let m = mesh(
        &node,
        PodOptions::new().injected(),
        PodOptions::new().injected(),
        Serve::Echo,
    );
    let bytes = 16 << 20;
    let results = m.echoed_by_app_b(m.send().bytes(bytes).connections(4));
    assert!(results.iter().all(|r| r.data_segs_out > 0), "{results:?}");
    // Each connection: Envoy A's upstream socket and Envoy B's accepted one, each
    // sending and receiving. Each payload crosses between them twice (echo), over
    // the short path but for the stretches where backpressure sent it over TCP.
    assert_short_path_joined(&node, 4 * 2);
    node.assert_counter_at_least("short_path_redirected_bytes", 4 * bytes as u64);
    // Request/response sizes: every byte between the sidecars, none over TCP.
    let before = node.counter("short_path_redirected_bytes");
    m.echoed(m.send().bytes(64 << 10).connections(4));
    assert_eq!(
        node.counter("short_path_redirected_bytes") - before,
        4 * 2 * (64 << 10),
        "{:?}",
        node.counters()
    );
    assert_eq!(node.counter("short_path_peer_missing"), 0);
    wait_for_empty_maps(&node);
}

/// The sidecars of another mesh's profile (docs/meshes.md) talk over the short
/// path as Istio's do: Envoy A ⇄ Envoy B carries every byte of request/response
/// sizes, both ways, and app B gets them all.
fn other_mesh_sidecars_take_the_short_path(
    node: &TestNode,
    pod: PodOptions,
    envoy: impl Fn() -> EnvoyOptions,
) {
    let m = mesh_with(node, (pod.clone(), pod), envoy, Serve::Echo, &[]);
    for p in [&m.a, &m.b] {
        let record = node
            .maps()
            .pod(p.netns_cookie())
            .unwrap()
            .expect("captured");
        assert_ne!(record.flags & ml_pod_flag::ML_POD_SHORT_PATH.0, 0);
    }
    let bytes = 64 << 10;
    m.echoed_by_app_b(m.send().bytes(bytes).connections(4));
    // Each connection: Envoy A's upstream socket and Envoy B's accepted one, each
    // sending and receiving; the apps' sockets stay on TCP.
    assert_short_path_carried(node, 4 * 2, 4 * 2 * bytes as u64);
    assert_eq!(node.counter("short_path_peer_missing"), 0);
    drop(m);
    wait_for_empty_maps(node);
}

/// Issue 15, item 4: under `mesh: "kuma"`, kuma-dp (Envoy as 5678 on 15001/15006).
#[test]
fn kuma_sidecars_talk_over_the_short_path() {
    let node = TestNode::builder("sp-kuma")
        .short_path()
        .meshlane_config(|_| json!({"mesh": "kuma"}))
        .build();
    let kuma_dp = Identity {
        uid: 5678,
        gid: 5678,
    };
    other_mesh_sidecars_take_the_short_path(&node, PodOptions::new().kuma_injected(), || {
        EnvoyOptions::new().identity(kuma_dp)
    });
}

/// Issue 15, item 4: under `mesh: "linkerd"`, Envoy as 2102 on 4140/4143 standing
/// in for linkerd2-proxy (docs/meshes.md).
#[test]
fn linkerd_sidecars_talk_over_the_short_path() {
    let (node, _api) =
        common::linkerd_node::linkerd_node(TestNode::builder("sp-linkerd").short_path());
    let proxy = Identity {
        uid: 2102,
        gid: 2102,
    };
    other_mesh_sidecars_take_the_short_path(&node, PodOptions::new().linkerd_injected(), || {
        EnvoyOptions::new().identity(proxy).ports(4140, 4143)
    });
}

/// A slow reader: app B reads nothing for two seconds while app A sends 64 MiB.
/// Envoy B stops reading Envoy A, and the kernel would queue handed-over messages
/// at Envoy B without any limit; the sender goes to TCP (whose window stops it)
/// once 4 MiB wait, and back to the short path when the reader has caught up.
#[test]
fn a_slow_reader_gets_backpressure_not_an_unbounded_queue() {
    let node = short_path_node("sp-backpressure");
    let m = stalled_reader_mesh(&node, PodOptions::new().injected(), 2000);
    let (a, b) = (&m.a, &m.b);
    let send = m.send_in_megabytes(64 << 20);
    let (results, held) = thread::scope(|scope| {
        let sender = scope.spawn(|| send.run(&a.place()));
        thread::sleep(scaled(Duration::from_millis(1500)));
        // What Envoy B's socket from Envoy A holds unread, mid-stall.
        let held = unread_bytes(&b.place(), &a.ipv4().to_string());
        (sender.join().unwrap(), held)
    });
    eprintln!("Envoy B held {held} bytes unread mid-stall");
    assert_eq!(results[0].error, None, "{}", results[0].raw);
    assert_server_got(&m.app_b, &results);
    // 4 MiB handed over plus what TCP's own window lets through; without the
    // backpressure all 64 MiB would be queued there.
    assert!(
        held > 0 && held < 8 << 20,
        "Envoy B holds {held} bytes unread"
    );
    node.assert_counter_at_least("short_path_backpressure", 1);
    node.assert_counter_at_least("short_path_resumed", 1);
}

/// A sender on the short path resends over TCP after milliseconds, not TCP's
/// 200 ms minimum: when a receiver full of handed-over messages drops its first TCP
/// segments (docs/shortpath.md, rule 2), the stream stalls for one such wait. App B
/// reads nothing for its first second, so Envoy A's sends go to TCP under
/// backpressure and come back. The wait is set at the connect, so the handshake's
/// round trip already gives a short timeout. The control: the same pods with the
/// short path off keep TCP's minimum.
#[test]
fn short_path_senders_retransmit_after_milliseconds() {
    let node = short_path_node("sp-rto");
    let on = stalled_reader_mesh(&node, PodOptions::new().injected(), 1000);
    let on_rto = envoy_a_retransmission_timeouts(&on);
    eprintln!("short path on: rto {on_rto:?} ms");
    // The first sample: the timeout the handshake set, before any loss backs it off.
    assert!(
        on_rto.first().is_some_and(|&ms| ms < 100.0),
        "Envoy A's sockets to B, short path on: rto {on_rto:?} ms; counters {:?}",
        node.counters()
    );
    node.assert_counter_at_least("short_path_backpressure", 1);
    drop(on);
    let off = stalled_reader_mesh(&node, opted_out(), 1000);
    let off_rto = envoy_a_retransmission_timeouts(&off);
    eprintln!("short path off: rto {off_rto:?} ms");
    assert!(
        !off_rto.is_empty() && off_rto.iter().all(|&ms| ms >= 200.0),
        "Envoy A's sockets to B, short path off: rto {off_rto:?} ms"
    );
}

/// Two pods of `options` whose app B starts reading after `stall_ms`.
fn stalled_reader_mesh(node: &TestNode, options: PodOptions, stall_ms: u64) -> Mesh<'_> {
    mesh_with(
        node,
        (options.clone(), options),
        EnvoyOptions::new,
        Serve::Sink,
        &["--start-after-ms", &scaled_ms(stall_ms).to_string()],
    )
}

/// Every retransmission timeout (`ss`'s rto, ms) seen on Envoy A's sockets to pod
/// B while app A sends 16 MiB in 1 MiB chunks, polled every 50 ms.
fn envoy_a_retransmission_timeouts(m: &Mesh) -> Vec<f64> {
    let send = m.send_in_megabytes(16 << 20);
    let peer_ip = m.b.ipv4().to_string();
    let (results, seen) = thread::scope(|scope| {
        let sender = scope.spawn(|| send.run(&m.a.place()));
        let mut seen = Vec::new();
        while !sender.is_finished() {
            seen.extend(retransmission_timeouts(&m.a.place(), &peer_ip));
            thread::sleep(Duration::from_millis(50));
        }
        (sender.join().unwrap(), seen)
    });
    assert_eq!(results[0].error, None, "{}", results[0].raw);
    assert_server_got(&m.app_b, &results);
    seen
}

/// `ss`'s rto (ms) of every socket of this place connected to `peer_ip`.
fn retransmission_timeouts(place: &Place, peer_ip: &str) -> Vec<f64> {
    ss_details(place, "-tinH", peer_ip)
        .iter()
        .filter_map(|info| {
            info.split_whitespace()
                .find_map(|field| field.strip_prefix("rto:")?.parse().ok())
        })
        .collect()
}

/// The most bytes a socket of this place connected to `peer_ip` holds unread
/// (`ss`'s skmem r: handed-over messages count there too).
fn unread_bytes(place: &Place, peer_ip: &str) -> u64 {
    ss_details(place, "-tmnH", peer_ip)
        .iter()
        .map(|skmem| {
            skmem
                .split(['(', ','])
                .find_map(|field| field.trim().strip_prefix('r')?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// The detail line `ss` prints under each TCP socket of this place connected to
/// `peer_ip` (`options` ask for one: `-i`, `-m`).
fn ss_details(place: &Place, options: &str, peer_ip: &str) -> Vec<String> {
    let out = Spawn::new(place, "ss").arg(options).run();
    let mut details = Vec::new();
    let mut lines = out.stdout.lines();
    while let Some(line) = lines.next() {
        let matches = line
            .split_whitespace()
            .nth(4)
            .is_some_and(|remote| remote.contains(peer_ip));
        let Some(detail) = lines.next() else { break };
        if matches {
            details.push(detail.to_string());
        }
    }
    details
}

#[test]
fn large_payloads_cross_both_sidecars_byte_exact_ipv4() {
    large_payloads_both_ways("v4");
}

#[test]
fn large_payloads_cross_both_sidecars_byte_exact_ipv6() {
    large_payloads_both_ways("v6");
}

/// Partial reads (1-100 bytes per recv) at app B, random writes at app A, and
/// many connections at once: all byte-exact, and the maps empty afterwards.
#[test]
fn partial_reads_and_many_concurrent_connections() {
    let node = short_path_node("sp-many");
    let m = app_mesh(&node, Serve::SmallReadsEcho);
    let to = format!("{}:{APP_PORT}", m.b.ipv4());
    m.echoed(Send::to(&to).bytes(512 << 10).connections(4));

    let app_b = StreamServer::start(
        &m.b.place(),
        "::",
        APP_PORT + 1,
        Identity::ROOT,
        Serve::Echo,
    );
    let to = format!("{}:{}", m.b.ipv4(), APP_PORT + 1);
    let bytes = 256 << 10;
    let many = m.echoed(Send::to(&to).bytes(bytes).connections(64));
    assert_server_got(&app_b, &many);
    assert!(many.iter().all(|r| r.data_segs_out == 0), "{many:?}");
    assert_eq!(node.counter("short_path_tx_sockets"), (4 + 64) * 4);
    assert_eq!(node.counter("short_path_peer_missing"), 0);
    wait_for_empty_maps(&node);
}

/// App A half-closes (shutdown(SHUT_WR)) and keeps reading; app B answers only
/// after the FIN. And the other way round: app B closes first, app A still reads.
#[test]
fn half_close_then_the_peer_still_reads() {
    let node = short_path_node("sp-halfclose");
    let m = app_mesh(&node, Serve::EchoAfterEof);
    let bytes = 4 << 20;
    m.echoed_by_app_b(m.send().bytes(bytes).connections(2));
    node.assert_counter_at_least("short_path_redirected_bytes", 2 * bytes as u64);
    wait_for_empty_maps(&node);
}

/// An RST after data: the proxy (a stand-in that reads late) sees a prefix of the
/// bytes, never anything else, then the reset; nothing hangs and the next
/// connection works. (TCP drops what the sender had not transmitted yet; over the
/// short path everything `send` accepted is already queued at the reader.)
#[test]
fn an_rst_after_data_ends_the_connection_with_a_prefix_of_the_bytes() {
    for short_path in [true, false] {
        let node = TestNode::builder(if short_path { "sp-rst" } else { "sp-rst-off" })
            .meshlane_config(move |_| json!({ "shortPath": short_path }))
            .build();
        let a = node.add_pod("a", with_app());
        let bytes = 1 << 20;
        // A stand-in for the proxy's outbound listener: it only reads, late.
        let proxy = StreamServer::start_with(
            &a.place(),
            "127.0.0.1",
            15001,
            Identity::PROXY,
            Serve::Sink,
            &[
                "--start-after-ms",
                &scaled_ms(300).to_string(),
                "--prefix-of-seed",
                "7",
                "--prefix-bytes",
                &bytes.to_string(),
            ],
        );
        let sent = Send::to("10.250.1.1:1111")
            .bytes(bytes)
            .seed(7)
            .rst()
            .run(&a.place());
        assert_eq!(sent[0].error, None, "{}", sent[0].raw);
        let got = proxy.wait_for_connections(1);
        assert!(got[0]["bytes"].as_u64().unwrap() <= bytes as u64, "{got:?}");
        assert_eq!(
            got[0]["prefix_ok"], true,
            "short path {short_path}: {got:?}"
        );
        let error = got[0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("ConnectionReset") || error.contains("not connected"),
            "short path {short_path}: {got:?}"
        );
        assert_eq!(
            node.counter("short_path_redirected_bytes") >= bytes as u64,
            short_path,
            "{:?}",
            node.counters()
        );
        let next = Send::to("10.250.1.1:1111")
            .bytes(1000)
            .seed(8)
            .no_echo()
            .run(&a.place());
        assert_eq!(next[0].error, None);
        assert_eq!(proxy.wait_for_connections(2)[1]["bytes"], 1000);
    }
}

/// Through the sidecars an RST ends the whole chain: whatever reached app B is a
/// prefix of what app A sent, no connection is left open, the next one works.
/// 256 KiB, less than any socket of the chain may hold before the kernel can drop
/// an RST that reaches it while its reader copies: above about 330 KiB the kernel
/// can lose the RST and leave a sidecar's socket open (docs/kernels.md, "The RST a
/// locked receiver lost"), the limit that keeps the short path off by default.
/// With 2 MiB this test failed about once in 60 runs.
#[test]
fn an_rst_through_both_sidecars_ends_the_chain() {
    let node = short_path_node("sp-rst-chain");
    let bytes: usize = 256 << 10;
    let m = mesh_with(
        &node,
        (with_app(), with_app()),
        EnvoyOptions::new,
        Serve::Sink,
        &[
            "--prefix-of-seed",
            "11",
            "--prefix-bytes",
            &bytes.to_string(),
        ],
    );
    let (a, b, app_b) = (&m.a, &m.b, &m.app_b);
    let sent = m.send().bytes(bytes).seed(11).rst().run(&a.place());
    assert_eq!(sent[0].error, None, "{}", sent[0].raw);
    wait_until_closed(&b.place(), APP_PORT);
    for conn in app_b.connections() {
        assert_eq!(conn["prefix_ok"], true, "{conn}");
    }
    // Same seed, half the bytes: a prefix too, and all of it must arrive.
    let next = m.send().bytes(bytes / 2).seed(11).no_echo().run(&a.place());
    assert_server_got_or_explain(app_b, &next, || {
        stall_report(&node, &[a.place(), b.place()])
    });
    wait_for_empty_maps_or_explain(&node, || stall_report(&node, &[a.place(), b.place()]));
}

/// Waits until no TCP connection of this place uses `port` (any state but
/// TIME-WAIT): the chain was torn down, nothing hangs half-open.
fn wait_until_closed(place: &Place, port: u16) {
    let deadline = Instant::now() + scaled(SETTLE);
    loop {
        let out = Spawn::new(place, "ss")
            .args([
                "-tnH",
                "state",
                "connected",
                "state",
                "exclude",
                "time-wait",
            ])
            .run();
        let open: Vec<&str> = out
            .stdout
            .lines()
            .filter(|line| line.contains(&format!(":{port} ")))
            .collect();
        if open.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections on port {port} still open: {open:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Apps that read with splice(2) (HAProxy, Go's io.Copy) or write with
/// sendfile(2): an app is never a receiver of handed-over messages (splice reads
/// only the TCP receive queue and would miss them), so every byte arrives.
#[test]
fn apps_reading_with_splice_and_writing_with_sendfile_get_every_byte() {
    let node = short_path_node("sp-splice");
    let m = app_mesh(&node, Serve::SpliceEcho);
    let bytes = 8 << 20;
    m.echoed_by_app_b(m.send().bytes(bytes).connections(2).sendfile());
    node.assert_counter_at_least("short_path_redirected_bytes", 2 * bytes as u64);
}

/// Small messages streamed one way (no answers) are faster over TCP: the app's
/// socket goes back to TCP and leaves the map, and not a byte is lost or reordered.
#[test]
fn a_stream_of_small_messages_goes_back_to_tcp_without_losing_a_byte() {
    let node = short_path_node("sp-fallback");
    let m = app_mesh(&node, Serve::Sink);
    let results = m
        .send()
        .bytes(256 << 10)
        .chunk("tiny")
        .no_echo()
        .run(&m.a.place());
    assert_eq!(results[0].error, None, "{}", results[0].raw);
    assert_no_stall(&results);
    assert_server_got(&m.app_b, &results);
    node.assert_counter_at_least("short_path_fell_back", 1);
    node.assert_counter_at_least("short_path_evicted", 1);
    assert!(results[0].data_segs_out > 0, "{}", results[0].raw);

    // Request/response stays on the short path however small the messages.
    let fell_back = node.counter("short_path_fell_back");
    let pairs = m.send().bytes(64).connections(8).run(&m.a.place());
    assert!(pairs.iter().all(|r| r.data_segs_out == 0), "{pairs:?}");
    assert_eq!(node.counter("short_path_fell_back"), fell_back);
}

/// The same `127.0.0.1:p → 127.0.0.1:15001` tuple in two pods at once: loopback
/// keys carry the netns cookie, so each proxy gets its own app's bytes.
#[test]
fn the_same_loopback_tuple_in_two_pods_does_not_collide() {
    let node = short_path_node("sp-collide");
    let a = node.add_pod("a", with_app());
    let b = node.add_pod("b", with_app());
    let _proxy_a =
        StreamServer::start(&a.place(), "127.0.0.1", 15001, Identity::PROXY, Serve::Echo);
    let _proxy_b =
        StreamServer::start(&b.place(), "127.0.0.1", 15001, Identity::PROXY, Serve::Echo);
    // The kernel picks the source port of the rewritten connect; with a one-port
    // ephemeral range in each pod (a per-netns setting) both pick the same one.
    for pod in [&a, &b] {
        pod.sysctl("net.ipv4.ip_local_port_range", "41001 41001");
    }
    // 64 KiB every 20 ms for about a second: both connections overlap.
    let send = |to: &str| Send::to(to).bytes(4 << 20).chunk("65536").pause_ms(20);
    let (from_a, from_b) = thread::scope(|scope| {
        let from_a = scope.spawn(|| send("10.250.1.1:1111").run(&a.place()));
        let from_b = scope.spawn(|| send("10.250.2.2:2222").run(&b.place()));
        (from_a.join().unwrap(), from_b.join().unwrap())
    });
    assert_all_echoed(&from_a, 4 << 20);
    assert_all_echoed(&from_b, 4 << 20);
    assert_ne!(from_a[0].sent_sha256, from_b[0].sent_sha256);
    assert_eq!(from_a[0].data_segs_out, 0, "{}", from_a[0].raw);
    assert_eq!(from_b[0].data_segs_out, 0, "{}", from_b[0].raw);
    assert_eq!(node.counter("short_path_tx_sockets"), 2);
    assert_eq!(node.counter("short_path_rx_sockets"), 2);
}

/// `shortPath: false` in the plugin configuration: no socket joins, every byte
/// goes over TCP, and the traffic is just as exact.
#[test]
fn the_node_wide_switch_turns_the_short_path_off() {
    let node = TestNode::builder("sp-node-off")
        .meshlane_config(|_| json!({ "shortPath": false }))
        .build();
    // The pods' annotation cannot turn it on against the node.
    let m = app_mesh(&node, Serve::Echo);
    let results = m.echoed(m.send().bytes(4 << 20).connections(2));
    assert!(results.iter().all(|r| r.data_segs_out > 0), "{results:?}");
    for name in [
        "short_path_tx_sockets",
        "short_path_rx_sockets",
        "short_path_redirected_messages",
    ] {
        assert_eq!(node.counter(name), 0, "{name}: {:?}", node.counters());
    }
    // The program is attached all the same: the switch is the pods' setting.
    assert!(map_program_attachment(&PinLayout::new(node.pin_root()), &MAP_PROGRAMS[0]).is_some());
}

/// Without `shortPath` in the configuration the node-wide default follows the
/// kernel series (docs/kernels.md): on where the short path is proven, off
/// elsewhere. The pod's record carries the outcome, and the plugin's log says why.
#[test]
fn unset_the_node_wide_switch_follows_the_kernel_series() {
    let node = TestNode::new("sp-by-kernel");
    let a = node.add_pod("a", PodOptions::new().injected());
    let (major, minor) = kernel::series();
    let proven = PROVEN_SERIES.contains(&(major, minor));
    let cookie = a.netns_cookie();
    let record = PodMaps::open(&PinLayout::new(node.pin_root()))
        .and_then(|maps| maps.pod(cookie))
        .expect("pod maps readable")
        .expect("the pod is captured");
    assert_eq!(
        record.flags & ml_pod_flag::ML_POD_SHORT_PATH.0 != 0,
        proven,
        "kernel {}",
        kernel::release()
    );
    let log = std::fs::read_to_string(node.layout().work_dir.join("meshlane-cni.log"))
        .expect("the plugin's log");
    let why = if proven {
        format!("node-wide on: kernel series {major}.{minor} is proven")
    } else {
        format!("node-wide off: kernel series {major}.{minor} is not among")
    };
    assert!(log.contains(&why), "no {why:?} in the plugin's log:\n{log}");
}

/// `meshlane.io/short-path: "false"` on pod A: none of A's sockets join, and B's
/// sockets do not pair with A's; B's own hop (app B → Envoy B, B lets its app in)
/// keeps the short path. And the other way round.
#[test]
fn a_pod_opts_out_with_its_annotation() {
    let node = short_path_node("sp-pod-off");
    let m = mesh(&node, opted_out(), with_app(), Serve::Echo);
    let bytes = 2 << 20;
    let results = m.echoed(m.send().bytes(bytes));
    assert!(results[0].data_segs_out > 0, "{}", results[0].raw);
    // Only app B → Envoy B: one sender, one receiver, the echoed payload.
    assert_eq!(
        node.counter("short_path_tx_sockets"),
        1,
        "{:?}",
        node.counters()
    );
    assert_eq!(
        node.counter("short_path_rx_sockets"),
        1,
        "{:?}",
        node.counters()
    );
    let redirected = node.counter("short_path_redirected_bytes");
    assert_eq!(redirected, bytes as u64, "{:?}", node.counters());

    let node = short_path_node("sp-pod-off-b");
    let m = mesh(&node, with_app(), opted_out(), Serve::Echo);
    let results = m.echoed(m.send().bytes(bytes));
    assert_eq!(results[0].data_segs_out, 0, "{}", results[0].raw);
    assert_eq!(
        node.counter("short_path_tx_sockets"),
        1,
        "{:?}",
        node.counters()
    );
    assert_eq!(
        node.counter("short_path_redirected_bytes"),
        bytes as u64,
        "{:?}",
        node.counters()
    );
}

/// The sk_msg program is attached through a link pinned under `<root>/links`, to
/// the pinned `ml_short_tx`, on kernels that have sk_msg links (6.10+); on older
/// ones to the map itself, with the program pinned under `<root>/progs`.
#[test]
fn sk_msg_is_attached_through_a_link_where_the_kernel_has_them() {
    let node = short_path_node("sp-link");
    let a = node.add_pod("a", PodOptions::new().injected());
    kernel::assert_sk_msg_attached_as_the_kernel_allows(&PinLayout::new(node.pin_root()));
    // CHECK sees it.
    a.check();
}

/// Kernels before 6.10 have no sk_msg links: the program is attached to the map
/// itself. The same path, forced on any kernel, carries traffic just as well.
#[test]
fn without_sk_msg_links_the_program_is_attached_to_the_map() {
    let node = short_path_node("sp-legacy");
    let layout = PinLayout::new(node.pin_root());
    let outcome = ensure_attached_with(&layout, &node.layout().cgroup, MapAttach::ProgAttach)
        .expect("loading with BPF_PROG_ATTACH");
    assert!(matches!(outcome, AttachOutcome::Attached(_)), "{outcome:?}");
    assert_eq!(
        map_program_attachment(&layout, &MAP_PROGRAMS[0]),
        Some(MapAttachment::Map)
    );
    assert!(!layout.link("sk_msg").exists());

    let m = mesh(
        &node,
        PodOptions::new().injected(),
        PodOptions::new().injected(),
        Serve::Echo,
    );
    m.echoed(m.send().bytes(2 << 20));
    node.assert_counter_at_least("short_path_redirected_bytes", 2 * (2 << 20));
    // The ADD found everything attached and left it so.
    assert_eq!(
        map_program_attachment(&layout, &MAP_PROGRAMS[0]),
        Some(MapAttachment::Map)
    );
    m.a.check();
}

/// Not a test: the end-to-end measurements of docs/shortpath.md, through real
/// Envoys, for each pod setting on one node ("false", the default, "app"),
/// alternating, medians over repetitions. Run on a quiet machine:
///
/// `sudo -E cargo test --release --test shortpath -- --ignored measure --nocapture`
#[test]
#[ignore]
fn measure_end_to_end() {
    let sizes: Vec<usize> = std::env::var("MESHLANE_MEASURE_SIZES")
        .unwrap_or_else(|_| "1,64,256,1024,4096,16384,65536".to_string())
        .split(',')
        .map(|s| s.parse().expect("sizes"))
        .collect();
    let reps: usize = std::env::var("MESHLANE_MEASURE_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let node = short_path_node("sp-measure");
    let settings = [
        ("off", opted_out()),
        ("proxy", PodOptions::new().injected()),
        ("app", with_app()),
    ];
    let mut pairs = Vec::new();
    for (i, (name, options)) in settings.iter().enumerate() {
        let a = node.add_pod(&format!("a{i}"), options.clone());
        let b = node.add_pod(&format!("b{i}"), options.clone());
        let envoy_a = a.start_envoy(EnvoyOptions::new().ipv4_only());
        let envoy_b = b.start_envoy(EnvoyOptions::new().ipv4_only().with_inbound());
        let mut server = Spawn::new(&b.place(), "qperf")
            .identity(Identity::APP)
            .spawn();
        thread::sleep(Duration::from_millis(300));
        assert!(server.is_running(), "qperf server: {}", server.output());
        pairs.push((*name, a, b, envoy_a, envoy_b, server));
    }
    let qperf = |a: &Pod, b: &Pod, size: usize, test: &str| -> f64 {
        let out = Spawn::new(&a.place(), "qperf")
            .identity(Identity::APP)
            .args([
                "-t",
                "2",
                "-m",
                &size.to_string(),
                &b.ipv4().to_string(),
                test,
            ])
            .timeout(Duration::from_secs(60))
            .run();
        let text = out.stdout;
        let line = text
            .lines()
            .find(|l| l.contains(" = "))
            .unwrap_or_else(|| panic!("qperf {test}: {text} {}", out.stderr));
        let mut words = line.split_whitespace().skip(2);
        let value: f64 = words.next().unwrap().parse().unwrap();
        let factor = match words.next().unwrap() {
            "GB/sec" => 1000.0,
            "MB/sec" => 1.0,
            "KB/sec" => 0.001,
            "ns" => 0.001,
            "us" => 1.0,
            "ms" => 1000.0,
            other => panic!("qperf unit {other}"),
        };
        value * factor
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v[v.len() / 2]
    };
    println!(
        "size     setting  tcp_bw MB/s  tcp_lat us   bw/off  lat/off   (medians of {reps}; \
         ratios: median of each repetition's ratio to \"off\" measured next to it)"
    );
    for size in sizes {
        let mut bw = vec![Vec::new(); pairs.len()];
        let mut lat = vec![Vec::new(); pairs.len()];
        for _ in 0..reps {
            for (i, (_, a, b, ..)) in pairs.iter().enumerate() {
                bw[i].push(qperf(a, b, size, "tcp_bw"));
                lat[i].push(qperf(a, b, size, "tcp_lat"));
            }
        }
        let ratio = |values: &[f64], base: &[f64]| {
            median(values.iter().zip(base).map(|(v, b)| v / b).collect())
        };
        for (i, (name, ..)) in pairs.iter().enumerate() {
            println!(
                "{size:<8} {name:<8} {:>11.1} {:>11.2} {:>7.2} {:>8.2}",
                median(bw[i].clone()),
                median(lat[i].clone()),
                ratio(&bw[i], &bw[0]),
                ratio(&lat[i], &lat[0])
            );
        }
    }
    println!("{:?}", node.counters());
}

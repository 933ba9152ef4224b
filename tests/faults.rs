//! Faults around the plugin and the agent: the plugin killed inside ADD and DEL,
//! then the runtime's retries. Each fault is real: the plugin runs under strace,
//! which sends it SIGKILL at the entry of its n-th call of a system call, for
//! every n until the command completes, so every step that changes the node's
//! state (BPF map writes, links, pins: `bpf`; pin removal: `unlink`) is a kill
//! point. What must hold after each: the retries succeed, and once the pod is
//! deleted nothing names its netns.
//!
//! Needs root and strace; fails loudly (never skips) when it cannot run.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::agent::{install_args, Agent, WAIT};
use common::api_server::{token_kubeconfig, ApiServer, Authority, Reply, ServerOptions};
use common::bpffs::{self, BpffsMount};
use common::prereq::meshlane_binary;
use common::timing::wait_until;
use common::variant::{attach_variant_sk_msg, sk_msg_program_id};
use common::{Connect, Identity, PluginOutput, Pod, PodOptions, ProbeServer, TestNode};

const SIDECAR_POD: &str = include_str!("fixtures/kube/sidecar-pod.json");

const STRACE: &str = "/usr/bin/strace";

/// The system calls a kill is injected at: `bpf` (map updates and deletes, link
/// creation, pins) and `unlink` (pin removal).
const KILL_SYSCALLS: [&str; 2] = ["bpf", "unlink"];

/// Every how many `bpf` calls the node's first ADD is killed (each point costs
/// a fresh node).
const FIRST_ADD_STRIDE: usize = 40;

/// strace arguments that kill the plugin (SIGKILL) at its `n`-th `syscall`.
fn killed_at(syscall: &str, n: usize) -> Vec<String> {
    assert!(
        Path::new(STRACE).exists(),
        "{STRACE} is needed to inject faults"
    );
    [
        STRACE,
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        &format!("trace={syscall}"),
        "-e",
        &format!("inject={syscall}:signal=KILL:when={n}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// meshlane alone for `pod` (an uncaptured pod: the chain's meshlane left it),
/// as an injected pod, with the chain's result as prevResult.
fn meshlane(node: &TestNode, pod: &Pod, command: &str, wrapper: &[String]) -> PluginOutput {
    let mut conf = node.meshlane_netconf("1.0.0");
    conf["prevResult"] = pod.result().cloned().expect("the chain's result");
    conf["runtimeConfig"] = json!({
        "io.kubernetes.cri.pod-annotations": {
            "sidecar.istio.io/status": common::pod::INJECTED_STATUS
        }
    });
    let env = node.cni_env(command, Some(pod.runtime()));
    node.chain()
        .exec_plugin_under(wrapper, "meshlane", &env, conf.to_string().as_bytes())
}

/// tmpfs's allocation unit.
const PAGE: usize = 4096;

/// Bytes left in the log's last page when the disk is full.
const ROOM_LEFT: usize = 50;

/// Fills a file system: a file grown until the disk refuses more.
fn fill(dir: &Path) {
    let mut filler = File::create(dir.join("filler")).unwrap();
    let chunk = [0u8; 4096];
    loop {
        match filler.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(err) => panic!("filling {}: {err}", dir.display()),
        }
    }
}

/// The plugin's log on a full disk: the ADD that must succeed succeeds with the
/// previous result unchanged on stdout, the one that must fail fails with its
/// own error (code and culprit), DEL succeeds, nothing hangs (the harness
/// times each call out). Once there is room again, the next record starts a
/// line of its own: before the fix it was glued to the one the full disk cut.
#[test]
fn a_full_log_disk_changes_no_answer() {
    let node = TestNode::builder("log-full")
        .meshlane_config(|layout| json!({"logFile": layout.work_dir.join("logdisk/cni.log")}))
        .build();
    let disk = BpffsMount::tmpfs(node.layout().work_dir.join("logdisk"), 64 * 1024).unwrap();
    let log_path = disk.path().join("cni.log");
    let _first = node.add_pod("first", PodOptions::new().injected());
    // The log's last page keeps room for a few bytes only, so that the next
    // record is cut short by the full disk (tmpfs allocates whole pages).
    let size = fs::metadata(&log_path).unwrap().len() as usize;
    let room = PAGE - size % PAGE;
    let pad = (room + PAGE - ROOM_LEFT) % PAGE;
    assert!(pad > 60, "{size}");
    let filler_record = format!(
        "ts=2026-01-01T00:00:00.000Z level=info msg=\"{}\"\n",
        "p".repeat(pad - 46)
    );
    assert_eq!(filler_record.len(), pad);
    fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap()
        .write_all(filler_record.as_bytes())
        .unwrap();
    fill(disk.path());

    let mut pod = node.add_pod("web", PodOptions::new().injected());
    let steps = &pod.add_output().steps;
    assert_eq!(
        steps[1].json(),
        steps[0].json(),
        "prevResult passes through"
    );
    let cookie = pod.netns_cookie();
    assert!(node.maps().pod(cookie).unwrap().is_some(), "captured");

    let annotation = "traffic.sidecar.istio.io/includeInboundPorts";
    let mut bad = node.try_add_pod(
        "bad",
        PodOptions::new().injected().annotation(annotation, "80,x"),
    );
    let failed = bad.add_output().failed_step().expect("the ADD fails");
    let error = failed
        .error()
        .unwrap_or_else(|| panic!("no error JSON: {failed:?}"));
    assert_eq!(error.code, 7, "{error:?}");
    assert!(error.msg.contains(annotation), "{error:?}");
    bad.del().expect_success();
    pod.del().expect_success();
    assert_eq!(node.maps().entries_of(cookie).unwrap(), 0);

    fs::remove_file(disk.path().join("filler")).unwrap();
    let _later = node.add_pod("later", PodOptions::new().injected());
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(log.ends_with('\n'), "a line cut short: {log:?}");
    // The record the full disk cut stays cut; every record after it starts a
    // line of its own.
    let cut: Vec<&str> = log.lines().filter(|line| line.len() == ROOM_LEFT).collect();
    assert_eq!(cut.len(), 1, "one record was cut short: {log}");
    for line in log.lines() {
        assert!(line.starts_with("ts=20"), "not a record: {line:?}");
        assert_eq!(
            line.matches("ts=20").count(),
            1,
            "two records on one line: {line:?}"
        );
    }
    let last = log.lines().last().unwrap();
    assert!(last.contains("pod=default/later"), "{log}");
}

/// On a node whose programs are loaded (by a first captured pod), with an
/// uncaptured pod for meshlane to be run on alone: calls `point(node, pod,
/// syscall, n, what)` for n = 1, 2, … of each of `KILL_SYSCALLS` until it
/// returns false (the command ran to its end before its n-th such call); at
/// least `min` kill points must have been found.
fn each_kill_point(
    node_name: &str,
    command: &str,
    min: usize,
    mut point: impl FnMut(&TestNode, &Pod, &str, usize, &str) -> bool,
) {
    let node = TestNode::new(node_name);
    node.add_pod("first", PodOptions::new().injected());
    let pod = node.add_pod("victim", PodOptions::new());
    let mut points = 0;
    for syscall in KILL_SYSCALLS {
        for n in 1.. {
            if !point(
                &node,
                &pod,
                syscall,
                n,
                &format!("{command} killed at {syscall} #{n}"),
            ) {
                break;
            }
            points += 1;
        }
    }
    eprintln!("{command}: {points} kill points");
    assert!(points >= min, "only {points} kill points in a {command}");
}

/// Runs `command` under strace, killed at its `n`-th `syscall`: true when it
/// was killed, false when it ran to its end without reaching that call.
fn killed(node: &TestNode, pod: &Pod, command: &str, syscall: &str, n: usize) -> bool {
    let output = meshlane(node, pod, command, &killed_at(syscall, n));
    if output.status.success() {
        return false;
    }
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGKILL),
        "{command} at {syscall} #{n}: the plugin must have been killed: {output:?}"
    );
    true
}

/// The runtime's next call after `what`, which must succeed.
fn runtime_step(node: &TestNode, pod: &Pod, command: &str, what: &str) {
    let output = meshlane(node, pod, command, &[]);
    assert!(
        output.status.success() && !output.timed_out,
        "{what}, then {command}: must succeed: {output:?}"
    );
}

/// Every pin under the pin root whose path names the cookie.
fn pins_naming(root: &Path, cookie: u64) -> Vec<String> {
    let name = cookie.to_string();
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| *n == *name) {
                found.push(path.display().to_string());
            }
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            }
        }
    }
    found
}

/// Nothing of the pod is left: no entry of any map naming its netns cookie, no
/// attachment of its sandbox, no pin (link) naming the cookie.
fn expect_nothing_left(node: &TestNode, pod: &Pod, after: &str) {
    let maps = node.maps();
    let cookie = pod.netns_cookie();
    assert_eq!(maps.entries_of(cookie).unwrap(), 0, "{after}: entries left");
    assert_eq!(
        maps.attachment(&pod.attachment_key()).unwrap(),
        None,
        "{after}: attachment left"
    );
    let pins = pins_naming(node.pin_root(), cookie);
    assert!(pins.is_empty(), "{after}: pins left: {pins:?}");
}

fn expect_captured(node: &TestNode, pod: &Pod, after: &str) {
    let maps = node.maps();
    let cookie = pod.netns_cookie();
    assert!(
        maps.pod(cookie).unwrap().is_some(),
        "{after}: no pod record"
    );
    assert!(maps.inbound_attached(cookie), "{after}: no inbound link");
}

/// SIGKILL at every `bpf` and `unlink` call of an ADD. The runtime saw the ADD
/// fail; it either tries the ADD again and later deletes the pod, or deletes it
/// at once: each kill point is tried with both. They must succeed, the ADD
/// again must capture the pod, and after the DEL nothing of the pod is left.
/// Before the fixes, a kill between the write of the netns's tag slot and the
/// pin of its first tag link left the slot naming the netns for ever.
#[test]
fn add_killed_at_every_step_then_retried_leaves_nothing() {
    each_kill_point("kill-add", "ADD", 10, |node, pod, syscall, n, what| {
        if !killed(node, pod, "ADD", syscall, n) {
            runtime_step(node, pod, "DEL", what);
            return false;
        }
        runtime_step(node, pod, "ADD", what);
        expect_captured(node, pod, &format!("{what}, the ADD again"));
        runtime_step(node, pod, "DEL", what);
        expect_nothing_left(node, pod, &format!("{what}, ADD again, DEL"));
        // The same kill, and the runtime gives up: DEL alone.
        assert!(killed(node, pod, "ADD", syscall, n), "{what}, again");
        runtime_step(node, pod, "DEL", what);
        expect_nothing_left(node, pod, &format!("{what}, DEL alone"));
        true
    });
}

/// SIGKILL at every `bpf` and `unlink` call of a DEL; the runtime's DEL again
/// succeeds and leaves nothing of the pod. Before the fix, a DEL killed after it
/// removed the attachment left the pod's records for ever: the DEL again found
/// no attachment, so nothing to release.
#[test]
fn del_killed_at_every_step_then_retried_leaves_nothing() {
    each_kill_point("kill-del", "DEL", 5, |node, pod, syscall, n, what| {
        runtime_step(node, pod, "ADD", what);
        let stopped = killed(node, pod, "DEL", syscall, n);
        if stopped {
            runtime_step(node, pod, "DEL", what);
        }
        expect_nothing_left(node, pod, &format!("{what}, then DEL again"));
        stopped
    });
}

/// The node's first ADD loads and pins its programs and maps (hundreds of `bpf`
/// calls): killed every `FIRST_ADD_STRIDE` calls on a fresh node, the ADD
/// again must finish the load and capture the pod, and its DEL leave nothing.
#[test]
fn the_first_add_killed_while_loading_is_finished_by_the_next() {
    let mut points = 0;
    for n in (1..).step_by(FIRST_ADD_STRIDE) {
        let what = format!("first ADD killed at bpf #{n}");
        let node = TestNode::new("kill-load");
        let pod = node.add_pod("victim", PodOptions::new());
        if !killed(&node, &pod, "ADD", "bpf", n) {
            break;
        }
        points += 1;
        runtime_step(&node, &pod, "ADD", &what);
        expect_captured(&node, &pod, &format!("{what}, ADD again"));
        runtime_step(&node, &pod, "DEL", &what);
        expect_nothing_left(&node, &pod, &format!("{what}, ADD again, DEL"));
    }
    eprintln!("first ADD: {points} kill points");
    assert!(points >= 5, "only {points} kill points in a first ADD");
}

/// What the API server stand-in answers a pod GET with: the first `silent`
/// requests get no answer at all, the others an injected pod.
fn api_answering_after(silent: usize, ca: &Authority, node: &TestNode) -> ApiServer {
    let asked = AtomicUsize::new(0);
    ApiServer::start(
        ca,
        ServerOptions {
            netns: Some(node.layout().node_netns.clone()),
            ..ServerOptions::default()
        },
        Box::new(move |_| {
            if asked.fetch_add(1, Ordering::SeqCst) < silent {
                Reply::Silent
            } else {
                Reply::Json(200, SIDECAR_POD.to_owned())
            }
        }),
    )
}

/// ADD of a pod whose runtime passes no annotations: the API is the only
/// source, and without it the pod cannot be classified.
fn add_needing_the_api<'n>(node: &'n TestNode, name: &str) -> (Pod<'n>, Duration) {
    let start = Instant::now();
    let pod = node.try_add_pod(name, PodOptions::new().runtime_lacks_annotations());
    (pod, start.elapsed())
}

/// The API server down (connection refused) or silent (accepts, never
/// answers) during an ADD that needs it: the ADD fails closed with code 104
/// naming the pod and the cause, after its bounded attempts (3 of at most 2 s
/// each), writes nothing, and its DEL succeeds. Slow (the first attempt gets
/// no answer, the retry does): the ADD succeeds and captures the pod.
#[test]
fn an_add_that_needs_the_api_fails_closed_when_it_is_down_or_silent() {
    let node = TestNode::builder("api-down")
        .edit_conflist(|layout, conflist| {
            let meshlane = conflist.plugins.last_mut().expect("meshlane's entry");
            meshlane["kubeconfig"] = json!(layout.work_dir.join("kubeconfig"));
        })
        .build();
    let kubeconfig = node.layout().work_dir.join("kubeconfig");
    let ca = Authority::new("faults-api");
    let use_server =
        |url: &str| fs::write(&kubeconfig, token_kubeconfig(url, &ca.pem(), "t")).unwrap();
    let expect_fails_closed = |pod: &mut Pod, took: Duration, cause: &str| {
        let failed = pod.add_output().failed_step().expect("the ADD fails");
        assert_eq!(failed.plugin, "meshlane");
        assert!(!failed.timed_out, "{failed:?}");
        let error = failed
            .error()
            .unwrap_or_else(|| panic!("no error JSON: {failed:?}"));
        assert_eq!(error.code, 104, "{error:?}");
        assert!(
            error
                .msg
                .contains(&format!("cannot read pod default/{}", pod.name())),
            "{error:?}"
        );
        assert!(error.msg.contains(cause), "{error:?}");
        let loaded = node.pin_layout().maps_dir().exists();
        let cookie = pod.netns_cookie();
        assert!(
            !loaded || node.maps().entries_of(cookie).unwrap() == 0,
            "written"
        );
        pod.del().expect_success();
        eprintln!("API {cause}: the ADD failed after {took:?}: {}", error.msg);
    };

    // Down: nothing listens on the port.
    let port = {
        let _inside = meshlane::netns::NetnsGuard::enter(&node.layout().node_netns).unwrap();
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    use_server(&format!("https://127.0.0.1:{port}"));
    let (mut down, took) = add_needing_the_api(&node, "down");
    expect_fails_closed(&mut down, took, "refused");

    // Silent: every attempt times out.
    let silent = api_answering_after(usize::MAX, &ca, &node);
    use_server(&silent.url());
    let (mut hung, took) = add_needing_the_api(&node, "hung");
    expect_fails_closed(&mut hung, took, "no answer within 2s");
    assert_eq!(
        silent.seen().len(),
        3,
        "three attempts, then the ADD gives up"
    );

    // Slow: the first attempt gets nothing, the retry gets the pod.
    let slow = api_answering_after(1, &ca, &node);
    use_server(&slow.url());
    let (slowly, took) = add_needing_the_api(&node, "slowly");
    assert!(
        slowly.add_output().succeeded(),
        "{}",
        slowly.add_output().describe()
    );
    assert!(
        node.maps().pod(slowly.netns_cookie()).unwrap().is_some(),
        "captured"
    );
    assert_eq!(slow.seen().len(), 2);
    eprintln!("API slow: the ADD succeeded after {took:?}");
}

/// A net.d for the agent, with the node's own chain as the primary config.
fn agent_net_d(node: &TestNode) -> PathBuf {
    let net_d = node.layout().work_dir.join("net.d");
    fs::create_dir_all(&net_d).unwrap();
    let conflist = serde_json::to_string_pretty(&node.chain().conflist.to_json()).unwrap();
    fs::write(net_d.join("10-bridge.conflist"), conflist).unwrap();
    net_d
}

/// A captured pod with a proxy stand-in on 15001, and a server in another pod
/// that its app calls: where the call lands tells whether capture holds.
struct CapturedPod<'n> {
    pod: Pod<'n>,
    to: String,
    _dest: Pod<'n>,
    _servers: [ProbeServer; 2],
}

impl<'n> CapturedPod<'n> {
    fn start(node: &'n TestNode) -> Self {
        let pod = node.add_pod("web", PodOptions::new().injected());
        let dest = node.add_pod("dest", PodOptions::new());
        let servers = [
            ProbeServer::start(&dest.place(), 8080, "dest"),
            ProbeServer::original_dst(&pod.place(), "127.0.0.1", 15001, "proxy").start(),
        ];
        let to = format!("{}:8080", dest.ipv4());
        let captured = CapturedPod {
            pod,
            to,
            _dest: dest,
            _servers: servers,
        };
        assert_eq!(captured.lands_at(), "proxy", "captured");
        captured
    }

    /// "proxy" while captured, "dest" when the call goes around the proxy.
    fn lands_at(&self) -> String {
        Connect::to(&self.to)
            .identity(Identity::APP)
            .expect_reply(&self.pod.place())
            .name
    }
}

/// `meshlane precheck -o json` for the node: (exit code, the bpffs check).
fn precheck_bpffs(node: &TestNode, net_d: &Path) -> (i32, Value) {
    let layout = node.layout();
    let output = Command::new(meshlane_binary())
        .arg("precheck")
        .arg("--cni-conf-dir")
        .arg(net_d)
        .arg("--bpffs-root")
        .arg(&layout.pin_root)
        .arg("--cgroup")
        .arg(&layout.cgroup)
        .args(["-o", "json"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("precheck -o json: {err}: {output:?}"));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "bpffs")
        .cloned()
        .unwrap_or_else(|| panic!("no bpffs check: {report}"));
    (output.status.code().unwrap_or(-1), check)
}

/// The node's bpffs unmounted under a running, captured pod (an operator's
/// `umount`, a host reconfiguration). Every pin goes with it — the node's maps
/// and the links that held its programs on the cgroup — so capture stops (once
/// the last descriptor into a lazily detached bpffs is closed): the app's
/// connect reaches its destination directly. precheck fails its
/// bpffs check, and the agent's readiness goes false naming the pin root. Once
/// a bpffs is mounted again the agent loads and attaches the programs again and
/// is ready; the pod's records are gone with the old maps, so the running pod
/// is captured again only by its enrollment.
#[test]
fn bpffs_unmounted_under_a_running_pod() {
    let node = TestNode::new("bpffs-gone");
    let net_d = agent_net_d(&node);
    let probe = CapturedPod::start(&node);
    let lands_at = || probe.lands_at();
    let mut agent = Agent::start(
        &node.layout().cgroup,
        &install_args(node.layout(), &net_d),
        &[],
    );
    agent.wait_until_ready();
    assert_eq!(precheck_bpffs(&node, &net_d).1["verdict"], "OK");

    bpffs::unmount(&node.layout().bpffs).unwrap();
    // A busy bpffs (the agent reading a map) is detached lazily: its pins,
    // and so the links, go once the last descriptor into it is closed.
    assert!(
        wait_until(WAIT, Duration::from_millis(100), || lands_at() == "dest"),
        "capture outlived the bpffs"
    );
    let (code, check) = precheck_bpffs(&node, &net_d);
    assert_eq!(
        (code, check["verdict"].as_str()),
        (1, Some("FAIL")),
        "{check}"
    );
    let body = agent.wait_for_readiness(503);
    eprintln!("bpffs unmounted: precheck {check}; the agent: {body}");
    let pin_root = node.layout().pin_root.display();
    let reason = format!("not ready: {pin_root} is not on a bpffs mount");
    assert!(body.starts_with(&reason), "{body}");
    assert!(
        !body.contains("is not attached"),
        "one reason, not every pin: {body}"
    );

    let _again = BpffsMount::mount(node.layout().bpffs.clone()).unwrap();
    agent.wait_for_readiness(200);
    assert_eq!(precheck_bpffs(&node, &net_d).1["verdict"], "OK");
    let cookie = probe.pod.netns_cookie();
    assert!(node.maps().pod(cookie).unwrap().is_none(), "records gone");
    assert_eq!(lands_at(), "dest", "no record: uncaptured until enrolled");
    agent.terminate();
}

/// The primary CNI rewrites its conflist (meshlane chained in it) and the
/// write is torn: half a JSON document, written in place. The agent must leave
/// those bytes alone (the runtime skips the file; meshlane has nothing sound to
/// write), write no other file, and say why it is not ready. Once the primary
/// finishes its write, the agent chains meshlane into the new config, keeping
/// everything the primary wrote.
#[test]
fn a_torn_primary_conflist_is_left_as_written_until_the_primary_completes_it() {
    let node = TestNode::builder("conf-torn").without_meshlane().build();
    let net_d = node.layout().work_dir.join("net.d");
    fs::create_dir_all(&net_d).unwrap();
    let file = net_d.join("10-bridge.conflist");
    let primary = node.chain().conflist.to_json();
    fs::write(&file, serde_json::to_string_pretty(&primary).unwrap()).unwrap();
    let mut agent = Agent::start(
        &node.layout().cgroup,
        &install_args(node.layout(), &net_d),
        &[],
    );
    agent.wait_until_ready();

    let mut rewritten = primary.clone();
    rewritten["plugins"][0]["mtu"] = json!(1400);
    let text = serde_json::to_string_pretty(&rewritten).unwrap();
    let torn = &text[..text.len() / 2];
    fs::write(&file, torn).unwrap();
    agent.wait_for_log("skipping an invalid CNI config");
    let body = agent.wait_for_readiness(503);
    eprintln!("torn conflist: the agent: {body}");
    assert!(
        body.contains("10-bridge.conflist") && body.contains("not valid JSON"),
        "the reason: {body}"
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        torn,
        "the torn file was changed"
    );
    let names: Vec<String> = fs::read_dir(&net_d)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["10-bridge.conflist"], "files written meanwhile");

    fs::write(&file, &text).unwrap();
    agent.wait_for_readiness(200);
    let chained: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    let plugins = chained["plugins"].as_array().unwrap();
    assert_eq!(
        plugins[0], rewritten["plugins"][0],
        "the primary's new entry"
    );
    assert_eq!(plugins.last().unwrap()["type"], "meshlane");
    agent.terminate();
}

/// Every pin under `root`, by its path below it.
fn pin_names(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else {
                let below = path.strip_prefix(root).unwrap();
                names.insert(below.display().to_string());
            }
        }
    }
    names
}

/// Where the program upgrade runs among the agent's `bpf` calls, from an
/// strace log of a whole start (`trace=bpf,write`, single-threaded until it
/// serves): the calls made before it says the programs are attached, and
/// those made before it says one was upgraded.
fn upgrade_window(trace: &str) -> (usize, usize) {
    let mut calls = 0;
    let (mut start, mut end) = (None, None);
    for line in trace.lines() {
        let call = line.split_whitespace().nth(1).unwrap_or_default();
        if call.starts_with("bpf(") {
            calls += 1;
        } else if call.starts_with("write(2,") && line.contains("node programs already attached") {
            start.get_or_insert(calls);
        } else if call.starts_with("write(2,") && line.contains("program upgraded") {
            end.get_or_insert(calls);
        }
    }
    match (start, end) {
        (Some(start), Some(end)) if start < end => (start, end),
        _ => panic!("no upgrade in the agent's trace ({start:?}, {end:?}):\n{trace}"),
    }
}

/// How many points of the upgrade the agent is killed at.
const UPGRADE_KILL_POINTS: usize = 8;

/// The agent killed (SIGKILL) at points inside its start-up program upgrade
/// (a program of a "previous version" on the short path's hook): evenly
/// spread over its `bpf` calls, the last one before the swap and the first
/// after it. Then it is started again. At every point the hook runs the old program or the new one, never
/// none: the pod's calls stay captured. The restarted agent finishes the
/// upgrade, is ready, and leaves no pin behind that a clean upgrade would not.
#[test]
fn the_agent_killed_during_a_program_upgrade_finishes_it_when_restarted() {
    let node = TestNode::new("up-kill");
    let layout = node.pin_layout();
    let probe = CapturedPod::start(&node);
    let net_d = agent_net_d(&node);
    let args = install_args(node.layout(), &net_d);
    let cgroup = &node.layout().cgroup;
    let pins = pin_names(node.pin_root());

    attach_variant_sk_msg(&layout);
    let trace = node.layout().work_dir.join("agent.strace");
    // Traced until its first bind(2), the health port it opens once the
    // upgrade is done, where it is killed (strace forwards no SIGTERM).
    let tracing = [
        STRACE,
        "-f",
        "-qq",
        "-s",
        "300",
        "-e",
        "trace=bpf,write,bind",
        "-e",
        "inject=bind:signal=KILL",
        "-o",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([trace.display().to_string()])
    .collect::<Vec<_>>();
    let mut traced = Agent::spawn_under(&tracing, cgroup, &args, &[]);
    assert_eq!(traced.wait_exit().signal(), Some(libc::SIGKILL));
    let (start, end) = upgrade_window(&fs::read_to_string(&trace).unwrap());
    eprintln!(
        "the upgrade: bpf calls {} to {end} of the agent's start",
        start + 1
    );

    let step = ((end - start) / UPGRADE_KILL_POINTS).max(1);
    let points: BTreeSet<usize> = (1..=UPGRADE_KILL_POINTS)
        .map(|k| (start + k * step).min(end))
        .chain([end, end + 1])
        .collect();
    for n in points {
        let what = format!("agent killed at bpf #{n}");
        let variant = attach_variant_sk_msg(&layout);
        let mut killed = Agent::spawn_under(&killed_at("bpf", n), cgroup, &args, &[]);
        let status = killed.wait_exit();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: {status:?}");
        assert_eq!(probe.lands_at(), "proxy", "{what}: capture held");
        // The short path's hook still runs a program (it panics otherwise):
        // the variant, or this build's if the kill came after the swap.
        let running = sk_msg_program_id(&layout);
        let program = if running == variant {
            "the old"
        } else {
            "this build's"
        };
        eprintln!("{what}: the hook runs {program} program");

        let mut agent = Agent::start(cgroup, &args, &[]);
        agent.wait_for_log("node programs are this version's");
        agent.wait_until_ready();
        assert_ne!(sk_msg_program_id(&layout), variant, "{what}: not upgraded");
        assert_eq!(pin_names(node.pin_root()), pins, "{what}: pins");
        assert_eq!(probe.lands_at(), "proxy", "{what}: capture after");
        agent.terminate();
    }
}

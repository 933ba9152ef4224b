//! meshlane as the runtime drives it: the chain bridge + host-local → meshlane at
//! cniVersion 1.0.0 (ADD, CHECK, DEL in reverse), meshlane alone at 1.1.0 (STATUS,
//! GC), and every bad input answered with the right code and no state left behind.
//! The BPF records are read back from the real pinned maps.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::net::IpAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use meshlane::datapath::attachment::UNKNOWN_SANDBOX_PREFIX;
use meshlane::datapath::{AttachmentKey, PodMaps};
use serde_json::{json, Value};

use common::timing::wait_until;
use common::{Connect, Identity, Pod, PodOptions, ProbeServer, TestNode};

/// Runs meshlane alone for `pod`'s netns with a hand-made config (as if it were
/// the next plugin of the chain), under a fresh container ID unless told otherwise.
fn meshlane_add(
    node: &TestNode,
    pod: &Pod,
    container_id: &str,
    config: Value,
) -> common::PluginOutput {
    let mut env = node.cni_env("ADD", Some(pod.runtime()));
    for (key, value) in env.iter_mut() {
        if key == "CNI_CONTAINERID" {
            *value = container_id.to_owned();
        }
    }
    node.run_meshlane(&env, config.to_string())
}

/// meshlane's config entry at 1.0.0 with a prevResult and extra keys merged in.
fn netconf(node: &TestNode, prev_result: Value, extra: Value) -> Value {
    let mut conf = node.meshlane_netconf("1.0.0");
    conf["prevResult"] = prev_result;
    // As containerd passes them to a plugin with the capability: an injected pod.
    conf["runtimeConfig"] = json!({
        "io.kubernetes.cri.pod-annotations": {
            "sidecar.istio.io/status": common::pod::INJECTED_STATUS
        }
    });
    if let (Some(conf), Some(extra)) = (conf.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            conf.insert(key.clone(), value.clone());
        }
    }
    conf
}

fn prev_result_for(pod: &Pod, address: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": pod.netns_path()}],
        "ips": [{"address": address, "interface": 0}]
    })
}

/// CNI GC with `valid` the attachments to keep; it must succeed.
fn gc_succeeds(node: &TestNode, valid: &[(&str, &str)]) {
    let gc = node.meshlane_gc(valid);
    assert!(gc.status.success(), "GC: {gc:?}");
}

fn expect_error(output: &common::PluginOutput, code: u64, mentions: &[&str]) {
    let error = output
        .error()
        .unwrap_or_else(|| panic!("expected error {code}, got {output:?}"));
    assert_eq!(error.code, code, "{error:?}");
    assert!(!output.status.success(), "an error must exit non-zero");
    for mention in mentions {
        assert!(
            error.msg.contains(mention),
            "message {:?} does not name {mention:?}",
            error.msg
        );
    }
}

#[test]
fn add_check_del_through_the_chain_writes_and_removes_the_pods_records() {
    let node = TestNode::new("life-basic");
    let mut pod = node.add_pod("web", PodOptions::new().injected().namespace("shop"));

    // meshlane hands the primary plugin's result on unchanged.
    let steps = &pod.add_output().steps;
    assert_eq!(steps.len(), 2);
    assert_eq!(
        steps[1].json(),
        steps[0].json(),
        "prevResult must pass through"
    );

    let cookie = pod.netns_cookie();
    let maps = node.maps();
    let record = maps
        .pod(cookie)
        .unwrap()
        .expect("a pod record keyed by the netns cookie");
    assert_eq!(record.ip_count, 1);
    assert_eq!(record.ips[0].to_ip(), IpAddr::from(pod.ipv4()));
    assert_eq!((record.proxy_uid, record.proxy_gid), (1337, 1337));
    let attachment = maps
        .attachment(&pod.attachment_key())
        .unwrap()
        .expect("attachment remembered");
    assert_eq!(attachment.netns_cookie, cookie);
    assert_eq!(attachment.pod_namespace, "shop");
    assert!(attachment.pod_name.starts_with("web"), "{attachment:?}");

    pod.check();
    pod.del();
    assert_eq!(
        maps.entries_of(cookie).unwrap(),
        0,
        "DEL left records behind"
    );
    assert!(maps.attachment(&pod.attachment_key()).unwrap().is_none());
    // Again: DEL is idempotent.
    pod.del();
}

/// Polls `count` until it satisfies `done`, for at most 10 s; returns the last count.
fn wait_for(mut count: impl FnMut() -> usize, done: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = count();
        if done(now) || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// DEL does not search the original-destination map (docs/reliability.md): its
/// records are keyed by the netns cookie, which the kernel never reuses, and each
/// goes when its connecting socket closes. So a DEL while a redirected connection
/// is open leaves exactly that record, and once it closes nothing references the pod.
#[test]
fn after_del_and_the_last_close_nothing_references_the_pod() {
    let node = TestNode::new("life-inflight");
    let mut pod = node.add_pod("a", PodOptions::new().injected());
    let _proxy = ProbeServer::original_dst(&pod.place(), "::", 15001, "proxy")
        .answer_after(Duration::from_secs(3))
        .start();
    let cookie = pod.netns_cookie();
    let maps = node.maps();
    let after_add = maps.entries_of(cookie).unwrap();
    let place = pod.place();
    let client = thread::spawn(move || {
        Connect::to("198.51.100.7:80")
            .identity(Identity::APP)
            .timeout(Duration::from_secs(15))
            .run(&place)
    });
    let open = wait_for(|| maps.entries_of(cookie).unwrap(), |n| n > after_add);
    assert_eq!(
        open,
        after_add + 1,
        "one connection record while it is open"
    );

    pod.del();
    assert!(maps.pod(cookie).unwrap().is_none());
    assert!(!maps.inbound_attached(cookie));
    assert_eq!(
        maps.entries_of(cookie).unwrap(),
        1,
        "DEL leaves only the open connection's record"
    );
    let outcome = client.join().expect("the client thread");
    assert!(
        outcome.ok,
        "the open connection carries on: {:?}",
        outcome.raw
    );
    assert_eq!(
        wait_for(|| maps.entries_of(cookie).unwrap(), |n| n == 0),
        0,
        "a record outlived its socket"
    );
}

#[test]
fn del_succeeds_after_the_netns_is_gone_and_without_prev_result() {
    let node = TestNode::new("life-gone");
    let mut pod = node.add_pod("a", PodOptions::new().injected());
    let cookie = pod.netns_cookie();
    let maps = node.maps();
    pod.remove_netns();
    pod.del();
    assert_eq!(maps.entries_of(cookie).unwrap(), 0);

    // cniVersion 0.3.1 chains pass no prevResult to DEL.
    let old = TestNode::builder("life-031").cni_version("0.3.1").build();
    let mut pod = old.add_pod("a", PodOptions::new().injected());
    let cookie = pod.netns_cookie();
    pod.del();
    assert_eq!(old.maps().entries_of(cookie).unwrap(), 0);
}

#[test]
fn check_fails_when_the_pods_records_are_gone() {
    let node = TestNode::new("life-check");
    let pod = node.add_pod("a", PodOptions::new().injected());
    node.maps().remove_pod(pod.netns_cookie()).unwrap();
    let check = pod.try_check();
    let error = check
        .steps
        .last()
        .and_then(|s| s.error())
        .expect("CHECK must fail");
    assert_eq!(error.code, 102, "{error:?}");
    assert!(error.msg.contains("no pod record"), "{error:?}");
}

#[test]
fn status_and_gc_at_cni_1_1() {
    let node = TestNode::new("life-gc");
    let status = node.meshlane_status();
    assert!(status.status.success(), "STATUS: {status:?}");
    assert!(
        status.stdout.trim().is_empty(),
        "STATUS prints nothing on success"
    );

    let keep = node.add_pod("keep", PodOptions::new().injected());
    let mut gone = node.add_pod("gone", PodOptions::new().injected());
    let (keep_cookie, gone_cookie) = (keep.netns_cookie(), gone.netns_cookie());
    gc_succeeds(&node, &[(keep.container_id(), "eth0")]);
    let maps = node.maps();
    assert!(
        maps.pod(keep_cookie).unwrap().is_some(),
        "GC removed a listed attachment"
    );
    assert_eq!(
        maps.entries_of(gone_cookie).unwrap(),
        0,
        "GC kept an unlisted one"
    );
    gone.del(); // the runtime's later DEL still succeeds

    // STATUS says "not available" when the configured cgroup is not cgroup v2.
    let mut conf = node.meshlane_netconf("1.1.0");
    conf["cgroupPath"] = json!(node.layout().tmp);
    let output = node.run_meshlane(&node.cni_env("STATUS", None), conf.to_string());
    expect_error(&output, 50, &["cgroup"]);
}

/// A pod the agent enrolled without knowing its sandbox ID is in no runtime's GC
/// list: GC keeps it while its netns lives (else its capture would silently stop)
/// and forgets it once the netns is gone.
#[test]
fn gc_keeps_a_pod_enrolled_without_its_sandbox_id_until_its_netns_is_gone() {
    let node = TestNode::new("life-gc-enrolled");
    let mut pod = node.add_pod("enrolled", PodOptions::new().injected());
    let cookie = pod.netns_cookie();
    let maps = node.maps();
    // Re-key the attachment as enrollment does when the sandbox is unknown.
    let runtime_key = pod.attachment_key();
    let mut attachment = maps.attachment(&runtime_key).unwrap().expect("attachment");
    maps.remove_attachment(&runtime_key).unwrap();
    attachment.key = AttachmentKey::new(&format!("{UNKNOWN_SANDBOX_PREFIX}{cookie}"), "eth0");
    maps.put_attachment(&attachment).unwrap();

    gc_succeeds(&node, &[]);
    assert!(
        maps.pod(cookie).unwrap().is_some(),
        "GC dropped a running enrolled pod"
    );
    assert!(maps.attachment(&attachment.key).unwrap().is_some());

    pod.remove_netns();
    // The kernel destroys a netns asynchronously; GC forgets the pod once it has.
    let forgotten = || {
        gc_succeeds(&node, &[]);
        maps.pod(cookie).unwrap().is_none()
    };
    assert!(
        wait_until(
            Duration::from_secs(10),
            Duration::from_millis(200),
            forgotten
        ),
        "GC kept an enrolled pod whose netns is gone"
    );
    assert!(maps.attachment(&attachment.key).unwrap().is_none());
    assert_eq!(maps.entries_of(cookie).unwrap(), 0);
}

/// DEL finds a pod's records from its index entry (docs/reliability.md, "Finding
/// a pod's records"), and still removes all of them when an ADD stopped between
/// its index entry and its pod record, and when an older meshlane wrote them
/// (no index entry, or no index map). GC removes an index entry that a stopped
/// ADD left alone.
#[test]
fn del_and_gc_clean_after_a_stopped_add_and_without_an_index_entry() {
    use meshlane::datapath::inbound_link;
    use meshlane::datapath::names::maps as names;
    use meshlane::datapath::pinned_map::PinnedMap;

    let node = TestNode::new("life-index");
    let mut old = node.add_pod("old", PodOptions::new().injected());
    let maps = node.maps();
    let layout = node.pin_layout();
    let index = PinnedMap::open(&layout, names::POD_INDEX).unwrap();
    let pods = PinnedMap::open(&layout, names::PODS).unwrap();
    let cookie = old.netns_cookie();
    index.delete(&cookie).unwrap();
    assert!(maps.entries_of(cookie).unwrap() > 1);
    old.del();
    assert_eq!(
        maps.entries_of(cookie).unwrap(),
        0,
        "records of an older meshlane"
    );

    let mut stopped = node.add_pod("stopped", PodOptions::new().injected());
    let cookie = stopped.netns_cookie();
    // What the ADD had written when it stopped: all but the inbound link and the
    // pod record (written last).
    inbound_link::detach(&layout, cookie).unwrap();
    pods.delete(&cookie).unwrap();
    let left = maps.entries_of(cookie).unwrap();
    assert!(
        left >= 4,
        "index, attachment, address, port entries: {left}"
    );
    stopped.del();
    assert_eq!(maps.entries_of(cookie).unwrap(), 0, "after a stopped ADD");

    let mut lone = node.add_pod("lone", PodOptions::new().injected());
    let cookie = lone.netns_cookie();
    let entry: meshlane::datapath::abi::ml_pod_index = index.get(&cookie).unwrap().unwrap();
    lone.del();
    index.put(&cookie, &entry).unwrap();
    assert_eq!(maps.entries_of(cookie).unwrap(), 1);
    gc_succeeds(&node, &[]);
    assert_eq!(
        maps.entries_of(cookie).unwrap(),
        0,
        "GC kept a lone index entry"
    );

    // A pin root whose programs an older meshlane loaded has no index map.
    std::fs::remove_file(layout.map(names::POD_INDEX)).unwrap();
    let mut unindexed = node.add_pod("unindexed", PodOptions::new().injected());
    let cookie = unindexed.netns_cookie();
    let maps = node.maps();
    assert!(maps.pod(cookie).unwrap().is_some());
    unindexed.del();
    assert_eq!(maps.entries_of(cookie).unwrap(), 0, "without the index map");
}

/// Multus: a second attachment (net1) in the same netns adds its IP to the one pod
/// record; deleting one attachment keeps the pod captured with the other's IPs.
#[test]
fn several_attachments_of_one_netns_share_the_pod_record() {
    let node = TestNode::new("life-multus");
    let mut pod = node.add_pod("a", PodOptions::new().injected());
    pod.ip(&[
        "link", "add", "net1", "type", "veth", "peer", "name", "net1peer",
    ]);
    pod.ip(&["addr", "add", "192.168.77.5/24", "dev", "net1"]);
    pod.ip(&["link", "set", "net1", "up"]);
    let mut env = node.cni_env("ADD", Some(pod.runtime()));
    for (key, value) in env.iter_mut() {
        if key == "CNI_IFNAME" {
            *value = "net1".into();
        }
    }
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net1", "sandbox": pod.netns_path()}],
        "ips": [{"address": "192.168.77.5/24", "interface": 0}]
    });
    let conf = netconf(&node, prev.clone(), json!({}));
    let add = node.run_meshlane(&env, conf.to_string());
    assert!(add.status.success(), "{add:?}");

    let cookie = pod.netns_cookie();
    let maps = node.maps();
    let ips = |maps: &PodMaps| -> std::collections::BTreeSet<IpAddr> {
        let pod = maps.pod(cookie).unwrap().expect("pod record");
        pod.ips[..usize::from(pod.ip_count)]
            .iter()
            .map(|a| a.to_ip())
            .collect()
    };
    let multus_ip: IpAddr = "192.168.77.5".parse().unwrap();
    assert_eq!(ips(&maps), [IpAddr::from(pod.ipv4()), multus_ip].into());

    for (key, value) in env.iter_mut() {
        if key == "CNI_COMMAND" {
            *value = "DEL".into();
        }
    }
    let del = node.run_meshlane(&env, conf.to_string());
    assert!(del.status.success(), "{del:?}");
    assert_eq!(
        ips(&maps),
        [IpAddr::from(pod.ipv4())].into(),
        "net1's IP must go, eth0's stay"
    );
    // Not only the record: inbound steering of net1's address goes with it,
    // while the pod lives on with eth0.
    assert_eq!(maps.address_owner(multus_ip).unwrap(), None);
    assert_eq!(
        maps.address_owner(IpAddr::from(pod.ipv4())).unwrap(),
        Some(cookie)
    );
    pod.del();
    assert_eq!(maps.entries_of(cookie).unwrap(), 0);
}

/// kubelet runs ADDs in parallel: every one succeeds and each node program is
/// attached exactly once.
#[test]
fn concurrent_adds_attach_each_program_once() {
    let node = TestNode::new("life-parallel");
    let names = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let pods: Vec<Pod> = thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(|| node.try_add_pod(name, PodOptions::new().injected())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for pod in &pods {
        assert!(
            pod.add_output().succeeded(),
            "{}",
            pod.add_output().describe()
        );
    }
    let shown = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(&node.layout().cgroup)
        .output()
        .expect("bpftool runs");
    let attached: Value = serde_json::from_slice(&shown.stdout).expect("bpftool prints JSON");
    let attached = attached.as_array().expect("a list of attachments");
    assert_eq!(
        attached.len(),
        meshlane::datapath::loader::NODE_PROGRAMS.len(),
        "one link per node program: {attached:#?}"
    );
    let maps = node.maps();
    for pod in &pods {
        assert!(maps.pod(pod.netns_cookie()).unwrap().is_some());
    }
}

/// A pod that is not captured costs nothing: nothing is loaded, nothing written.
#[test]
fn a_pod_that_is_not_captured_loads_and_writes_nothing() {
    let node = TestNode::new("life-skip");
    let mut pod = node.add_pod("plain", PodOptions::new());
    let steps = &pod.add_output().steps;
    assert_eq!(steps[1].json(), steps[0].json());
    assert!(
        !node.pin_root().exists(),
        "meshlane created pins for an uncaptured pod"
    );
    pod.del();
}

/// Every bad input gets the spec's error JSON with the right code, a message
/// naming the culprit, and leaves no state: the pin root is never even created.
#[test]
fn bad_inputs_are_refused_before_anything_is_written() {
    let node = TestNode::new("life-bad");
    let pod = node.add_pod("plain", PodOptions::new());
    let good_prev = prev_result_for(&pod, &format!("{}/24", pod.ipv4()));
    let capture = |extra: Value| -> Value {
        let mut all = json!({"capture": "all"});
        if let (Some(all), Some(extra)) = (all.as_object_mut(), extra.as_object()) {
            all.extend(extra.clone());
        }
        netconf(&node, good_prev.clone(), all)
    };
    // Capture on, with this prevResult.
    let with_prev = |prev: Value| netconf(&node, prev, json!({"capture": "all"}));

    let cases: Vec<(&str, Value, u64, Vec<&str>)> = vec![
        (
            "malformed prevResult",
            with_prev(prev_result_for(&pod, "10.0.0.300/24")),
            6,
            vec!["prevResult.ips[0].address", "10.0.0.300/24"],
        ),
        (
            "unknown key",
            capture(json!({"bpfRoot": "/sys/fs/bpf/x"})),
            7,
            vec!["bpfRoot"],
        ),
        (
            "bad capture mode",
            capture(json!({"capture": "some"})),
            7,
            vec!["capture", "some"],
        ),
        (
            "bad proxy uid",
            capture(json!({"proxyUID": 0})),
            7,
            vec!["proxyUID"],
        ),
        (
            "unknown mesh",
            capture(json!({"mesh": "consul"})),
            7,
            vec!["mesh", "consul"],
        ),
        (
            "an Istio setting with Linkerd",
            capture(json!({"mesh": "linkerd", "proxyUID": 2102})),
            7,
            vec!["proxyUID", "linkerd"],
        ),
        (
            "an Istio setting with another mesh",
            capture(json!({"mesh": "kuma", "dnsCapture": true})),
            7,
            vec!["dnsCapture", "kuma"],
        ),
        (
            "IP not in the netns",
            with_prev(prev_result_for(&pod, "10.254.254.254/24")),
            7,
            vec!["prevResult", "10.254.254.254"],
        ),
        (
            "no IP for the pod",
            with_prev(json!({"cniVersion": "1.0.0", "ips": []})),
            104,
            vec!["no IP"],
        ),
        (
            "cgroup is not cgroup v2",
            capture(json!({"cgroupPath": node.layout().tmp})),
            7,
            vec!["cgroupPath"],
        ),
        (
            "pin root not on a bpffs",
            capture(json!({"bpffsRoot": node.layout().tmp.join("not-bpffs")})),
            7,
            vec!["bpffsRoot"],
        ),
    ];
    for (case, config, code, mentions) in cases {
        let output = meshlane_add(&node, &pod, &format!("bad-{}", case.len()), config);
        expect_error(&output, code, &mentions);
        assert!(
            !node.pin_root().exists(),
            "{case}: meshlane created its pin root although the input was bad"
        );
    }
    assert!(!node.layout().tmp.join("not-bpffs").exists());

    let mut missing_prev = with_prev(Value::Null);
    missing_prev.as_object_mut().unwrap().remove("prevResult");
    expect_error(
        &meshlane_add(&node, &pod, "no-prev", missing_prev),
        7,
        &["prevResult"],
    );

    let mut env = node.cni_env("ADD", Some(pod.runtime()));
    for (key, value) in env.iter_mut() {
        if key == "CNI_ARGS" {
            value.push_str(";MESHLANE_CAPTURE=maybe");
        }
    }
    let output = node.run_meshlane(
        &env,
        netconf(&node, good_prev.clone(), json!({})).to_string(),
    );
    expect_error(&output, 4, &["MESHLANE_CAPTURE", "maybe"]);

    let mut env = node.cni_env("ADD", Some(pod.runtime()));
    for (key, value) in env.iter_mut() {
        if key == "CNI_NETNS" {
            *value = "/run/netns/meshlane-test-no-such-netns".into();
        }
    }
    let output = node.run_meshlane(&env, capture(json!({})).to_string());
    expect_error(&output, 101, &["meshlane-test-no-such-netns"]);
    assert!(!node.pin_root().exists());

    // Once something is loaded, a bad ADD still writes nothing of its pod.
    let good = meshlane_add(&node, &pod, "good-one", capture(json!({})));
    assert!(good.status.success(), "{good:?}");
    let maps = node.maps();
    let before = maps.attachments().unwrap().len();
    let bad = meshlane_add(
        &node,
        &pod,
        "bad-after-good",
        netconf(
            &node,
            prev_result_for(&pod, "10.254.254.254/24"),
            json!({"capture": "all"}),
        ),
    );
    expect_error(&bad, 7, &["10.254.254.254"]);
    assert_eq!(maps.attachments().unwrap().len(), before);
    assert!(maps
        .attachment(&AttachmentKey::new("bad-after-good", "eth0"))
        .unwrap()
        .is_none());
}

/// Runs `step` with meshlane under `strace -e trace=bpf` and returns how many
/// `bpf` calls meshlane made (nothing is timed).
fn bpf_calls_of<T>(node: &TestNode, step: impl FnOnce() -> T) -> (T, usize) {
    let plugin = node.layout().bin_dir.join("meshlane");
    let real = std::fs::read_link(&plugin).unwrap();
    let trace = node.layout().tmp.join("bpf.strace");
    let _ = std::fs::remove_file(&trace);
    std::fs::remove_file(&plugin).unwrap();
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\nexec strace -f -qq -e trace=bpf -o {} {} \"$@\"\n",
            trace.display(),
            real.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&plugin)
        .status()
        .unwrap();
    let result = step();
    std::fs::remove_file(&plugin).unwrap();
    std::os::unix::fs::symlink(&real, &plugin).unwrap();
    let calls = std::fs::read_to_string(&trace)
        .unwrap_or_else(|err| panic!("{}: {err} (did meshlane run?)", trace.display()))
        .lines()
        .filter(|line| line.contains("bpf("))
        .count();
    (result, calls)
}

/// An ADD of a netns new to meshlane does not search the node-wide maps for the
/// pod's old entries (docs/reliability.md, "Finding a pod's records"): with 20,000
/// port rules of other netns in the map, it makes as few `bpf` calls as on an
/// empty node. strace counts the calls; nothing is timed.
#[test]
fn an_add_does_not_search_the_other_pods_entries() {
    use meshlane::datapath::abi::ml_port_key;
    use meshlane::datapath::names::maps;
    use meshlane::datapath::pinned_map::PinnedMap;

    let node = TestNode::new("life-o1");
    // Loads the node's programs, so that the measured ADD only writes a pod.
    let _first = node.add_pod("first", PodOptions::new().injected());
    let ports = PinnedMap::open(&node.pin_layout(), maps::PORT_RULES).unwrap();
    const OTHERS: u64 = 20_000;
    for i in 0..OTHERS {
        let key = ml_port_key {
            netns_cookie: u64::MAX - i,
            port: 8080,
            list: 1,
            ..Default::default()
        };
        ports.put_raw(&key, &[1]).unwrap();
    }
    // Not injected: the chain's ADD leaves its netns to meshlane's ADD below.
    let plain = node.add_pod("plain", PodOptions::new());
    let config = netconf(
        &node,
        prev_result_for(&plain, &format!("{}/24", plain.ipv4())),
        json!({}),
    );
    let (output, calls) = bpf_calls_of(&node, || {
        meshlane_add(&node, &plain, plain.container_id(), config)
    });
    assert!(output.status.success(), "{output:?}");
    assert!(node.maps().pod(plain.netns_cookie()).unwrap().is_some());
    assert!(
        calls < 1_000,
        "the ADD made {calls} bpf calls with {OTHERS} port rules of other pods on the node: \
         it searched the node-wide maps"
    );
}

/// A pod's ADD and DEL find its records from its own keys, not by walking the
/// node-wide maps (docs/reliability.md, "Finding a pod's records"): the `bpf`
/// calls of one injected pod's ADD and of its DEL are counted with N real pods
/// on the node and again with 2N, and must not grow. Slot probing for the
/// netns tag (netns_tag.rs) may cost a lookup or two more on a fuller node; a
/// walk over the other pods' attachments or port entries costs at least N.
#[test]
fn add_and_del_cost_as_many_bpf_calls_at_2n_pods_as_at_n() {
    const N: usize = 10;
    const SLACK: usize = 3;
    let node = TestNode::new("life-2n");
    let mut pods = Vec::new();
    let measure = |label: &str| {
        let (mut probe, add) = bpf_calls_of(&node, || {
            node.add_pod(&format!("probe{label}"), PodOptions::new().injected())
        });
        assert!(node.maps().pod(probe.netns_cookie()).unwrap().is_some());
        let cookie = probe.netns_cookie();
        let (_, del) = bpf_calls_of(&node, || probe.del());
        assert_eq!(node.maps().entries_of(cookie).unwrap(), 0, "after DEL");
        (add, del)
    };
    for i in 0..N {
        pods.push(node.add_pod(&format!("pod{i}"), PodOptions::new().injected()));
    }
    let (add_n, del_n) = measure("n");
    for i in N..2 * N {
        pods.push(node.add_pod(&format!("pod{i}"), PodOptions::new().injected()));
    }
    let (add_2n, del_2n) = measure("2n");
    eprintln!(
        "bpf calls: ADD {add_n} at {N} pods, {add_2n} at {}; DEL {del_n}, {del_2n}",
        2 * N
    );
    assert!(
        add_2n <= add_n + SLACK,
        "ADD made {add_n} bpf calls at {N} pods and {add_2n} at {}: it grows with the pod count",
        2 * N
    );
    assert!(
        del_2n <= del_n + SLACK,
        "DEL made {del_n} bpf calls at {N} pods and {del_2n} at {}: it grows with the pod count",
        2 * N
    );
}

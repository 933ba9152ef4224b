//! Protocol-level CNI conformance: runs the built `meshlane` binary the way a
//! runtime does (a clean environment with only `CNI_*` variables, the config on
//! stdin) and checks the answer: exit status, exactly one JSON document on
//! stdout, the error code, and that the message names the culprit.
//!
//! Every case here fails before meshlane touches the kernel, so no root is
//! needed. As a safety net, should a case ever get past the protocol layer by
//! mistake, the configs point the plugin at a pin root that does not exist and
//! away from the production log file — and the case then fails on its code.

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;

use serde_json::{json, Value};

const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// What one invocation produced.
struct Answer {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Answer {
    /// The single JSON document on stdout; anything else on stdout fails.
    fn document(&self) -> Value {
        let mut stream = serde_json::Deserializer::from_str(&self.stdout).into_iter::<Value>();
        let first = match stream.next() {
            Some(Ok(doc)) => doc,
            other => panic!(
                "stdout is not a JSON document ({other:?}): {:?}; stderr: {}",
                self.stdout, self.stderr
            ),
        };
        assert!(
            stream.next().is_none(),
            "stdout holds more than one document: {:?}",
            self.stdout
        );
        first
    }

    /// Asserts a CNI error: exit 1, the code, the message naming `culprit`,
    /// `cniVersion` as expected; returns the document.
    fn error(&self, code: u64, culprit: &str, version: &str) -> Value {
        assert_eq!(
            self.code,
            Some(1),
            "exit status; stdout: {}; stderr: {}",
            self.stdout,
            self.stderr
        );
        let doc = self.document();
        assert_eq!(doc["code"], json!(code), "code of {doc}");
        let msg = doc["msg"]
            .as_str()
            .unwrap_or_else(|| panic!("msg in {doc}"));
        assert!(msg.contains(culprit), "{culprit:?} is not named in {msg:?}");
        assert_eq!(doc["cniVersion"], json!(version), "cniVersion of {doc}");
        let keys: Vec<&str> = doc
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert!(
            keys.iter()
                .all(|k| ["cniVersion", "code", "msg", "details"].contains(k)),
            "unexpected keys in {doc}"
        );
        doc
    }
}

/// Runs the binary with exactly `vars` in its environment and `stdin` as input.
fn exec(vars: &[(&str, &str)], stdin: &[u8]) -> Answer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshlane"))
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshlane");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_vec();
    // The plugin may exit without reading stdin (e.g. on a bad environment);
    // a runtime ignores EPIPE there, and so do we.
    let writer = thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for meshlane");
    writer.join().expect("stdin writer");
    Answer {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn exec_json(vars: &[(&str, &str)], stdin: &Value) -> Answer {
    exec(vars, stdin.to_string().as_bytes())
}

/// A complete, valid environment for `command`.
fn env(command: &str) -> Vec<(&str, &str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "3f2a9c1b0d4e"),
        ("CNI_NETNS", "/var/run/netns/meshlane-conformance-absent"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        ),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn without<'a>(mut vars: Vec<(&'a str, &'a str)>, name: &str) -> Vec<(&'a str, &'a str)> {
    vars.retain(|(k, _)| *k != name);
    vars
}

fn replace<'a>(
    vars: Vec<(&'a str, &'a str)>,
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut vars = without(vars, name);
    vars.push((name, value));
    vars
}

/// A valid config at `version` (with the safety-net settings, see the top).
fn conf(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "k8s-pod-network",
        "type": "meshlane",
        "bpffsRoot": "/nonexistent/meshlane-conformance",
        "logFile": "",
    })
}

fn with(mut doc: Value, key: &str, value: Value) -> Value {
    doc[key] = value;
    doc
}

fn drop_key(mut doc: Value, key: &str) -> Value {
    if let Some(map) = doc.as_object_mut() {
        map.remove(key);
    }
    doc
}

/// A config that passes every protocol check for `command` at 1.1.0.
fn valid_for(command: &str) -> Value {
    match command {
        "GC" => with(conf("1.1.0"), "cni.dev/valid-attachments", json!([])),
        "CHECK" => with(conf("1.1.0"), "prevResult", bridge_result("1.1.0")),
        _ => conf("1.1.0"),
    }
}

/// The shape `bridge` + `host-local` print at 1.x.
fn bridge_result(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": "cni0", "mac": "56:74:67:d1:88:e9"},
            {"name": "veth3e062c57", "mac": "6e:73:05:a5:6a:80"},
            {"name": "eth0", "mac": "4a:e9:0c:f4:b6:58", "sandbox": "/var/run/netns/meshlane-conformance-absent"}
        ],
        "ips": [
            {"interface": 2, "address": "10.22.0.2/16", "gateway": "10.22.0.1"},
            {"interface": 2, "address": "fd00:10:22::2/64", "gateway": "fd00:10:22::1"}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dns": {}
    })
}

const COMMANDS_WITH_CONFIG: [&str; 5] = ["ADD", "DEL", "CHECK", "STATUS", "GC"];

#[test]
fn version_always_answers() {
    let expected = json!({"cniVersion": "1.1.0", "supportedVersions": SUPPORTED});
    let mut inputs: Vec<Vec<u8>> = SUPPORTED
        .iter()
        .map(|v| json!({"cniVersion": v}).to_string().into_bytes())
        .collect();
    inputs.extend(SUPPORTED.iter().map(|v| conf(v).to_string().into_bytes()));
    inputs.extend([
        Vec::new(),
        b"{\"cniVersion\":\"0.1.0\"}".to_vec(),
        b"{\"cniVersion\":\"0.2.0\"}".to_vec(),
        b"{\"cniVersion\":\"9.9.9\"}".to_vec(),
        b"{}".to_vec(),
        b"not json at all".to_vec(),
    ]);
    for stdin in inputs {
        // VERSION needs nothing but CNI_COMMAND.
        for vars in [vec![("CNI_COMMAND", "VERSION")], env("VERSION")] {
            let answer = exec(&vars, &stdin);
            assert_eq!(
                answer.code,
                Some(0),
                "stdin {:?}: {}",
                String::from_utf8_lossy(&stdin),
                answer.stderr
            );
            assert_eq!(answer.document(), expected);
        }
    }
}

#[test]
fn unknown_or_empty_command() {
    for command in ["GET", "add", "Version", "DELETE", "FOO"] {
        let answer = exec_json(&replace(env("ADD"), "CNI_COMMAND", command), &conf("1.0.0"));
        let doc = answer.error(4, "CNI_COMMAND", "1.1.0");
        let msg = doc["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("{command:?}")), "{msg}");
    }
    // Set but empty counts as missing (the reference skeleton's rule).
    exec_json(&replace(env("ADD"), "CNI_COMMAND", ""), &conf("1.0.0")).error(
        4,
        "CNI_COMMAND: is missing",
        "1.1.0",
    );
}

#[test]
fn each_missing_variable_per_command() {
    let table = [
        (
            "ADD",
            ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"].as_slice(),
        ),
        (
            "CHECK",
            &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        ),
        ("DEL", &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]),
        ("GC", &["CNI_PATH"]),
    ];
    for (command, required) in table {
        for name in required {
            for vars in [without(env(command), name), replace(env(command), name, "")] {
                let answer = exec_json(&vars, &valid_for(command));
                answer.error(
                    4,
                    &format!("{name}: is missing (required for {command})"),
                    "1.1.0",
                );
            }
        }
    }
}

#[test]
fn all_missing_variables_are_named() {
    exec_json(&[("CNI_COMMAND", "ADD")], &conf("1.1.0")).error(
        4,
        "CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH",
        "1.1.0",
    );
}

#[test]
fn invalid_variables_per_command() {
    let table = [
        ("CNI_CONTAINERID", "-starts-with-dash"),
        ("CNI_CONTAINERID", "has space"),
        ("CNI_CONTAINERID", "slash/inside"),
        ("CNI_IFNAME", "sixteen-chars-xx"),
        ("CNI_IFNAME", "."),
        ("CNI_IFNAME", ".."),
        ("CNI_IFNAME", "eth/0"),
        ("CNI_IFNAME", "eth0:1"),
        ("CNI_IFNAME", "eth 0"),
        ("CNI_ARGS", "K8S_POD_NAME"),
        ("CNI_ARGS", "A=1;;B=2"),
        ("CNI_ARGS", "A=1=2"),
    ];
    for command in ["ADD", "DEL", "CHECK"] {
        for (name, value) in table {
            let answer = exec_json(&replace(env(command), name, value), &valid_for(command));
            let doc = answer.error(4, name, "1.1.0");
            let msg = doc["msg"].as_str().unwrap_or_default();
            assert!(msg.starts_with(&format!("{name}: ")), "{msg}");
        }
    }
}

#[test]
fn invalid_json_on_stdin() {
    let inputs: [&[u8]; 5] = [
        b"",
        b"{",
        b"not json",
        b"{\"cniVersion\": \"1.0.0\",}",
        b"{} {}",
    ];
    for command in COMMANDS_WITH_CONFIG {
        for stdin in inputs {
            exec(&env(command), stdin).error(
                6,
                "stdin: the network configuration is not valid JSON",
                "1.1.0",
            );
        }
    }
}

#[test]
fn non_object_json_on_stdin() {
    for command in COMMANDS_WITH_CONFIG {
        for (stdin, kind) in [
            ("[]", "an array"),
            ("\"conf\"", "a string"),
            ("1", "a number"),
            ("null", "null"),
        ] {
            exec(&env(command), stdin.as_bytes()).error(
                6,
                &format!("stdin: the network configuration must be a JSON object, got {kind}"),
                "1.1.0",
            );
        }
    }
}

#[test]
fn missing_or_unknown_cni_version() {
    for command in COMMANDS_WITH_CONFIG {
        let base = valid_for(command);
        exec_json(&env(command), &drop_key(base.clone(), "cniVersion")).error(
            1,
            "cniVersion: is missing",
            "1.1.0",
        );
        for bad in ["0.1.0", "0.2.0", "1.2.0", "2.0.0"] {
            exec_json(&env(command), &with(base.clone(), "cniVersion", json!(bad))).error(
                1,
                &format!("version \"{bad}\" is not supported"),
                "1.1.0",
            );
        }
        for bad in ["", "1.0", "latest", "v1.0.0"] {
            exec_json(&env(command), &with(base.clone(), "cniVersion", json!(bad))).error(
                1,
                &format!("{bad:?} is not a version"),
                "1.1.0",
            );
        }
        exec_json(&env(command), &with(base, "cniVersion", json!(1))).error(
            1,
            "cniVersion: 1 is not a version string",
            "1.1.0",
        );
    }
}

#[test]
fn check_needs_0_4_0() {
    for version in ["0.3.0", "0.3.1"] {
        let stdin = with(conf(version), "prevResult", bridge_result(version));
        exec_json(&env("CHECK"), &stdin).error(
            1,
            &format!("version {version} does not allow CHECK (needs 0.4.0 or later)"),
            version,
        );
    }
}

#[test]
fn status_and_gc_need_1_1_0() {
    for command in ["STATUS", "GC"] {
        for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
            let stdin = with(conf(version), "cni.dev/valid-attachments", json!([]));
            exec_json(&env(command), &stdin).error(
                1,
                &format!("version {version} does not allow {command} (needs 1.1.0 or later)"),
                version,
            );
        }
    }
}

#[test]
fn malformed_prev_result_on_add() {
    let table = [
        (json!([]), "prevResult: expected an object, got an array"),
        (
            json!({"ips": {}}),
            "prevResult.ips: expected an array, got an object",
        ),
        (
            json!({"ips": [{"address": "10.0.0.1/24"}, {"address": "10.0.0.300/24"}]}),
            "prevResult.ips[1].address: \"10.0.0.300/24\" is not an IP prefix",
        ),
        (
            json!({"ips": [{"address": "10.0.0.1/24", "interface": 3}]}),
            "prevResult.ips[0].interface: index 3 is out of range",
        ),
        (
            json!({"interfaces": [{"name": "eth0", "sandbox": "/ns"}], "ips": [{"address": "10.0.0.1/24", "interface": "0"}]}),
            "prevResult.ips[0].interface: \"0\" is not an index into interfaces",
        ),
        (
            json!({"ips": [{"version": "6", "address": "10.0.0.1/24"}]}),
            "prevResult.ips[0].version: \"6\" contradicts the IPv4 address",
        ),
        (
            json!({"routes": [{"dst": "default"}]}),
            "prevResult.routes[0].dst: \"default\" is not an IP prefix",
        ),
    ];
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        for (prev, message) in &table {
            let stdin = with(conf(version), "prevResult", prev.clone());
            exec_json(&env("ADD"), &stdin).error(6, message, version);
        }
    }
}

#[test]
fn check_without_prev_result() {
    exec_json(&env("CHECK"), &conf("1.0.0")).error(7, "prevResult: is missing", "1.0.0");
}

#[test]
fn missing_or_invalid_name_and_type() {
    for command in COMMANDS_WITH_CONFIG {
        for key in ["name", "type"] {
            let base = valid_for(command);
            exec_json(&env(command), &drop_key(base.clone(), key)).error(
                7,
                &format!("{key}: is missing"),
                "1.1.0",
            );
            exec_json(&env(command), &with(base.clone(), key, json!(42))).error(
                7,
                &format!("{key}: expected a string"),
                "1.1.0",
            );
            exec_json(&env(command), &with(base, key, json!(""))).error(
                7,
                &format!("{key}: is empty"),
                "1.1.0",
            );
        }
        exec_json(
            &env(command),
            &with(valid_for(command), "name", json!("bad/name")),
        )
        .error(7, "name: \"bad/name\" is not a valid network name", "1.1.0");
    }
}

#[test]
fn malformed_gc_attachments() {
    let gc_env = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")];
    exec_json(&gc_env, &conf("1.1.0")).error(7, "cni.dev/valid-attachments: is missing", "1.1.0");
    exec_json(
        &gc_env,
        &with(conf("1.1.0"), "cni.dev/valid-attachments", json!({})),
    )
    .error(7, "cni.dev/valid-attachments: expected an array", "1.1.0");
    exec_json(
        &gc_env,
        &with(
            conf("1.1.0"),
            "cni.dev/valid-attachments",
            json!([{"containerID": "a", "ifname": "eth0"}, {"containerID": "b"}]),
        ),
    )
    .error(
        7,
        "cni.dev/valid-attachments[1].ifname: is missing",
        "1.1.0",
    );
}

#[test]
fn wrongly_typed_standard_keys() {
    for (key, value) in [
        ("runtimeConfig", json!([])),
        ("capabilities", json!("portMappings")),
        ("disableCheck", json!("sometimes")),
        ("ipam", json!("host-local")),
    ] {
        exec_json(&env("ADD"), &with(conf("1.0.0"), key, value)).error(
            7,
            &format!("{key}: expected"),
            "1.0.0",
        );
    }
}

//! The CNI protocol around a [`Plugin`]: environment and stdin in, exit code and
//! at most one JSON document on stdout out.
//!
//! Checks run in the reference skeleton's order — command, environment, stdin
//! (JSON, `name`, `type`), `cniVersion`, the command's version gate, then the
//! plugin — so a runtime sees the same error for the same mistake from meshlane
//! as from the plugins it already knows. Nothing but that one document is ever
//! written to stdout: logs go to stderr or a file.

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::Value;

use super::command::{Command, Environment};
use super::config::{decode_object, version_of, NetConf};
use super::error::CniError;
use super::version::{version_info, CniVersion};
use super::{AttachmentRequest, GcRequest, Plugin};

/// Runs one CNI command and returns the process exit code: 0 on success; 1 after
/// printing the error result.
pub fn run<P: Plugin>(
    plugin: &P,
    env: impl IntoIterator<Item = (String, String)>,
    stdin: &mut impl Read,
    stdout: &mut impl Write,
) -> i32 {
    match execute(plugin, env, stdin) {
        Ok(None) => 0,
        Ok(Some(document)) => match emit(stdout, &document) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("meshlane: writing the CNI result to stdout failed: {err}");
                1
            }
        },
        Err(failure) => {
            let document = failure.error.to_json(failure.version);
            if let Err(err) = emit(stdout, &document) {
                eprintln!(
                    "meshlane: writing the CNI error to stdout failed ({err}); the error was: {}",
                    failure.error
                );
            }
            1
        }
    }
}

/// The process environment for [`run`]. Unlike `std::env::vars()`, it does not
/// panic on a non-UTF-8 entry somewhere in the environment: such keys are
/// skipped, such values are converted lossily (and then fail validation).
pub fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(key, value)| {
        Some((
            key.into_string().ok()?,
            value.to_string_lossy().into_owned(),
        ))
    })
}

/// An error and the version to state in its result (the request's, once known).
struct Failure {
    error: CniError,
    version: Option<CniVersion>,
}

impl Failure {
    fn at(version: Option<CniVersion>) -> impl Fn(CniError) -> Failure {
        move |error| Failure { error, version }
    }
}

/// The protocol up to the document to print (`None`: print nothing).
fn execute<P: Plugin>(
    plugin: &P,
    env: impl IntoIterator<Item = (String, String)>,
    stdin: &mut impl Read,
) -> Result<Option<Value>, Failure> {
    let env = Environment::from_vars(env).map_err(Failure::at(None))?;

    let mut input = Vec::new();
    let read = stdin.read_to_end(&mut input);
    if env.command == Command::Version {
        // VERSION must answer whatever stdin holds — nothing, garbage, or a
        // version meshlane does not know — since that is how runtimes find out.
        return Ok(Some(version_info()));
    }
    read.map_err(|err| {
        CniError::io(format!(
            "stdin: reading the network configuration failed: {err}"
        ))
    })
    .map_err(Failure::at(None))?;

    let map = decode_object(&input).map_err(Failure::at(None))?;
    // Errors about `name`/`type` come before the version check but still state
    // the request's version when it is a good one.
    let hint = version_of(&map).ok();
    let conf = NetConf::from_map(map).map_err(Failure::at(hint))?;
    let version = Some(conf.cni_version);
    conf.cni_version
        .allows(env.command)
        .map_err(Failure::at(version))?;

    call_plugin(plugin, env, conf).map_err(Failure::at(version))
}

fn call_plugin<P: Plugin>(
    plugin: &P,
    env: Environment,
    conf: NetConf,
) -> Result<Option<Value>, CniError> {
    match env.command {
        Command::Add => {
            // A chained plugin reads the pod's IPs from here: refuse a malformed
            // one before the plugin acts on half of it. (DEL does not: it must
            // clean up whatever the runtime sends.)
            conf.parsed_prev_result()?;
            let request = attachment_request(env, conf)?;
            let result = guard(|| plugin.add(&request))?;
            if !result.is_object() {
                return Err(CniError::internal(
                    "the plugin's ADD result is not a JSON object",
                ));
            }
            Ok(Some(result))
        }
        Command::Check => {
            // The spec requires the runtime to send the ADD result with CHECK.
            if conf.prev_result.is_none() {
                return Err(CniError::config(
                    "prevResult",
                    "is missing (CHECK requires the result of the preceding ADD)",
                ));
            }
            conf.parsed_prev_result()?;
            let request = attachment_request(env, conf)?;
            guard(|| plugin.check(&request)).map(|()| None)
        }
        Command::Del => {
            let request = attachment_request(env, conf)?;
            guard(|| plugin.del(&request)).map(|()| None)
        }
        Command::Status => guard(|| plugin.status(&conf)).map(|()| None),
        Command::Gc => {
            let request = GcRequest {
                valid: conf.valid_attachments()?,
                config: conf,
            };
            guard(|| plugin.gc(&request)).map(|()| None)
        }
        // Answered in `execute` before stdin is decoded; kept total for the compiler.
        Command::Version => Ok(Some(version_info())),
    }
}

fn attachment_request(env: Environment, config: NetConf) -> Result<AttachmentRequest, CniError> {
    // `Environment::from_vars` guarantees both for ADD/DEL/CHECK.
    let attachment = env.attachment().ok_or_else(|| {
        CniError::internal(format!(
            "{} without a container ID and interface name",
            env.command
        ))
    })?;
    Ok(AttachmentRequest {
        attachment,
        netns: env.netns,
        args: env.args,
        config,
    })
}

/// Runs a plugin callback, turning a panic into an error result: without it
/// the runtime would see an empty stdout and report "unexpected end of JSON".
/// The panic message itself still reaches stderr through the default hook.
fn guard<T>(call: impl FnOnce() -> Result<T, CniError>) -> Result<T, CniError> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(CniError::internal(format!("meshlane panicked: {what}")))
    })
}

/// One `write` for the whole document: stdout is line-buffered, and a written
/// line per JSON line cost an ADD a dozen system calls.
fn emit(stdout: &mut impl Write, document: &Value) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(document)?;
    text.push(b'\n');
    stdout.write_all(&text)?;
    stdout.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::{AttachmentId, PrevResult};
    use serde_json::json;
    use std::cell::RefCell;
    use std::path::PathBuf;

    /// Records what reached it; answers ADD with the pass-through result.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<&'static str>>,
        attachment: RefCell<Option<AttachmentRequest>>,
        gc: RefCell<Option<GcRequest>>,
        status: RefCell<Option<NetConf>>,
        fail_with: Option<CniError>,
        panic: bool,
        add_result: Option<Value>,
    }

    impl Recorder {
        fn failing(error: CniError) -> Self {
            Recorder {
                fail_with: Some(error),
                ..Recorder::default()
            }
        }

        fn outcome(&self, name: &'static str) -> Result<(), CniError> {
            self.calls.borrow_mut().push(name);
            assert!(!self.panic, "boom in {name}");
            match &self.fail_with {
                Some(err) => Err(err.clone()),
                None => Ok(()),
            }
        }

        /// `outcome`, then keeps what the command was given in `slot`.
        fn record<T: Clone>(
            &self,
            name: &'static str,
            slot: &RefCell<Option<T>>,
            given: &T,
        ) -> Result<(), CniError> {
            self.outcome(name)?;
            *slot.borrow_mut() = Some(given.clone());
            Ok(())
        }
    }

    impl Plugin for Recorder {
        fn add(&self, request: &AttachmentRequest) -> Result<Value, CniError> {
            self.outcome("add")?;
            *self.attachment.borrow_mut() = Some(request.clone());
            if let Some(result) = &self.add_result {
                return Ok(result.clone());
            }
            let prev = request
                .config
                .prev_result
                .clone()
                .unwrap_or_else(|| json!({}));
            Ok(PrevResult::pass_through(&prev, request.config.cni_version))
        }
        fn del(&self, request: &AttachmentRequest) -> Result<(), CniError> {
            self.record("del", &self.attachment, request)
        }
        fn check(&self, request: &AttachmentRequest) -> Result<(), CniError> {
            self.record("check", &self.attachment, request)
        }
        fn status(&self, config: &NetConf) -> Result<(), CniError> {
            self.record("status", &self.status, config)
        }
        fn gc(&self, request: &GcRequest) -> Result<(), CniError> {
            self.record("gc", &self.gc, request)
        }
    }

    type Vars = Vec<(String, String)>;

    struct Outcome {
        code: i32,
        stdout: String,
    }

    impl Outcome {
        /// The single JSON document on stdout (fails if there are zero or two).
        fn document(&self) -> Value {
            let mut stream = serde_json::Deserializer::from_str(&self.stdout).into_iter::<Value>();
            let first = stream
                .next()
                .expect("stdout holds a document")
                .expect("stdout is JSON");
            assert!(
                stream.next().is_none(),
                "more than one document: {}",
                self.stdout
            );
            first
        }

        fn error(&self, code: u32, fragment: &str) -> Value {
            assert_eq!(self.code, 1, "stdout: {}", self.stdout);
            let doc = self.document();
            assert_eq!(doc["code"], json!(code), "{doc}");
            let msg = doc["msg"].as_str().expect("msg is a string");
            assert!(msg.contains(fragment), "{fragment:?} not in {msg:?}");
            doc
        }
    }

    fn env(command: &str) -> Vec<(String, String)> {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "ctr1"),
            ("CNI_NETNS", "/var/run/netns/pod1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn without(mut vars: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
        vars.retain(|(k, _)| k != name);
        vars
    }

    fn conf(version: &str) -> Value {
        json!({"cniVersion": version, "name": "k8s-pod-network", "type": "meshlane"})
    }

    fn bridge_result() -> Value {
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "cni0", "mac": "56:74:67:d1:88:e9"},
                {"name": "veth3e062c57", "mac": "6e:73:05:a5:6a:80"},
                {"name": "eth0", "mac": "4a:e9:0c:f4:b6:58", "sandbox": "/var/run/netns/pod1"}
            ],
            "ips": [{"interface": 2, "address": "10.22.0.2/16", "gateway": "10.22.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {},
            "x-vendor": {"kept": true}
        })
    }

    fn with(mut doc: Value, key: &str, value: Value) -> Value {
        doc[key] = value;
        doc
    }

    fn run_with(plugin: &Recorder, vars: Vec<(String, String)>, stdin: &[u8]) -> Outcome {
        let mut out = Vec::new();
        let code = run(plugin, vars, &mut &stdin[..], &mut out);
        Outcome {
            code,
            stdout: String::from_utf8(out).expect("stdout is UTF-8"),
        }
    }

    fn run_json(plugin: &Recorder, vars: Vec<(String, String)>, stdin: &Value) -> Outcome {
        run_with(plugin, vars, stdin.to_string().as_bytes())
    }

    #[test]
    fn version_answers_whatever_stdin_holds() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"{\"cniVersion\":\"1.0.0\"}",
            b"{\"cniVersion\":\"0.3.1\"}",
            b"{\"cniVersion\":\"0.1.0\"}",
            b"{\"cniVersion\":\"9.9.9\"}",
            b"not json",
        ];
        for stdin in inputs {
            let plugin = Recorder::default();
            let out = run_with(
                &plugin,
                vec![("CNI_COMMAND".into(), "VERSION".into())],
                stdin,
            );
            assert_eq!(out.code, 0);
            assert_eq!(out.document(), version_info());
            assert!(plugin.calls.borrow().is_empty());
        }
    }

    struct BrokenReader;
    impl Read for BrokenReader {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("EIO"))
        }
    }

    #[test]
    fn version_answers_even_when_stdin_fails_and_others_report_io() {
        let plugin = Recorder::default();
        let mut out = Vec::new();
        let code = run(&plugin, env("VERSION"), &mut BrokenReader, &mut out);
        assert_eq!(code, 0);
        assert_eq!(
            serde_json::from_slice::<Value>(&out).expect("json"),
            version_info()
        );

        let mut out = Vec::new();
        let code = run(&plugin, env("ADD"), &mut BrokenReader, &mut out);
        let outcome = Outcome {
            code,
            stdout: String::from_utf8(out).expect("utf-8"),
        };
        outcome.error(5, "stdin: reading the network configuration failed: EIO");
        assert!(plugin.calls.borrow().is_empty());
    }

    #[test]
    fn add_passes_the_request_and_prints_the_result() {
        let plugin = Recorder::default();
        let stdin = with(
            with(conf("1.0.0"), "prevResult", bridge_result()),
            "proxyUID",
            json!(1337),
        );
        let out = run_json(&plugin, env("ADD"), &stdin);
        assert_eq!(out.code, 0, "{}", out.stdout);
        assert_eq!(
            out.document(),
            with(bridge_result(), "cniVersion", json!("1.0.0"))
        );
        assert_eq!(*plugin.calls.borrow(), ["add"]);

        let request = plugin.attachment.borrow().clone().expect("add ran");
        assert_eq!(
            request.attachment,
            AttachmentId {
                container_id: "ctr1".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(request.netns, Some(PathBuf::from("/var/run/netns/pod1")));
        assert_eq!(
            request.args,
            [
                ("K8S_POD_NAME".to_owned(), "web-0".to_owned()),
                ("K8S_POD_NAMESPACE".to_owned(), "default".to_owned())
            ]
        );
        assert_eq!(request.config.cni_version, CniVersion::V1_0_0);
        assert_eq!(request.config.plugin["proxyUID"], json!(1337));
    }

    #[test]
    fn commands_without_output_print_nothing() {
        let table = [
            ("DEL", conf("1.1.0"), "del"),
            ("DEL", conf("0.3.0"), "del"),
            (
                "CHECK",
                with(conf("0.4.0"), "prevResult", bridge_result()),
                "check",
            ),
            ("STATUS", conf("1.1.0"), "status"),
            (
                "GC",
                with(conf("1.1.0"), "cni.dev/valid-attachments", json!([])),
                "gc",
            ),
        ];
        for (command, stdin, call) in table {
            let plugin = Recorder::default();
            let out = run_json(&plugin, env(command), &stdin);
            assert_eq!(out.code, 0, "{command}: {}", out.stdout);
            assert_eq!(out.stdout, "", "{command}");
            assert_eq!(*plugin.calls.borrow(), [call]);
        }
    }

    #[test]
    fn del_tolerates_a_missing_netns_and_a_malformed_prev_result() {
        let plugin = Recorder::default();
        let stdin = with(conf("1.1.0"), "prevResult", json!({"ips": "garbage"}));
        let out = run_json(&plugin, without(env("DEL"), "CNI_NETNS"), &stdin);
        assert_eq!(out.code, 0, "{}", out.stdout);
        let request = plugin.attachment.borrow().clone().expect("del ran");
        assert_eq!(request.netns, None);
    }

    #[test]
    fn status_works_without_cni_path_and_gets_the_config() {
        let plugin = Recorder::default();
        let vars = vec![("CNI_COMMAND".to_owned(), "STATUS".to_owned())];
        let out = run_json(&plugin, vars, &conf("1.1.0"));
        assert_eq!(out.code, 0, "{}", out.stdout);
        assert_eq!(
            plugin.status.borrow().as_ref().map(|c| c.name.as_str()),
            Some("k8s-pod-network")
        );
    }

    #[test]
    fn gc_receives_the_valid_attachments() {
        let plugin = Recorder::default();
        let stdin = with(
            conf("1.1.0"),
            "cni.dev/valid-attachments",
            json!([{"containerID": "a1", "ifname": "eth0"}, {"containerID": "b2", "ifname": "net1"}]),
        );
        let vars = vec![
            ("CNI_COMMAND".to_owned(), "GC".to_owned()),
            ("CNI_PATH".to_owned(), "/opt/cni/bin".to_owned()),
        ];
        let out = run_json(&plugin, vars, &stdin);
        assert_eq!(out.code, 0, "{}", out.stdout);
        let request = plugin.gc.borrow().clone().expect("gc ran");
        assert_eq!(
            request.valid,
            [
                AttachmentId {
                    container_id: "a1".into(),
                    ifname: "eth0".into()
                },
                AttachmentId {
                    container_id: "b2".into(),
                    ifname: "net1".into()
                },
            ]
        );
    }

    #[test]
    fn gc_refuses_missing_or_malformed_attachments_before_the_plugin() {
        let table = [
            (conf("1.1.0"), 7, "cni.dev/valid-attachments: is missing"),
            (
                with(
                    conf("1.1.0"),
                    "cni.dev/valid-attachments",
                    json!([{"containerID": "a"}]),
                ),
                7,
                "cni.dev/valid-attachments[0].ifname: is missing",
            ),
        ];
        for (stdin, code, fragment) in table {
            let plugin = Recorder::default();
            run_json(&plugin, env("GC"), &stdin).error(code, fragment);
            assert!(plugin.calls.borrow().is_empty());
        }
    }

    #[test]
    fn plugin_errors_are_printed_with_the_request_version() {
        let plugin = Recorder::failing(
            CniError::datapath("attaching sk_lookup failed").with_details("EPERM"),
        );
        let stdin = with(conf("0.4.0"), "prevResult", bridge_result());
        for command in ["ADD", "DEL", "CHECK"] {
            let doc =
                run_json(&plugin, env(command), &stdin).error(100, "attaching sk_lookup failed");
            assert_eq!(
                doc,
                json!({"cniVersion": "0.4.0", "code": 100, "msg": "attaching sk_lookup failed", "details": "EPERM"})
            );
        }
        let plugin = Recorder::failing(CniError::plugin_not_available("bpffs is not mounted"));
        let doc =
            run_json(&plugin, env("STATUS"), &conf("1.1.0")).error(50, "bpffs is not mounted");
        assert_eq!(doc["cniVersion"], json!("1.1.0"));
        assert!(doc.get("details").is_none());
    }

    #[test]
    fn a_panicking_plugin_still_answers_with_json() {
        let plugin = Recorder {
            panic: true,
            ..Recorder::default()
        };
        let doc = run_json(&plugin, env("DEL"), &conf("1.0.0"))
            .error(999, "meshlane panicked: boom in del");
        assert_eq!(doc["cniVersion"], json!("1.0.0"));
    }

    #[test]
    fn a_non_object_add_result_is_an_internal_error() {
        let plugin = Recorder {
            add_result: Some(json!([])),
            ..Recorder::default()
        };
        run_json(&plugin, env("ADD"), &conf("1.1.0")).error(999, "not a JSON object");
    }

    #[test]
    fn protocol_errors_in_reference_order() {
        let good = conf("1.1.0");
        // (environment, stdin, code, message fragment, stated cniVersion)
        let table: Vec<(Vars, Vec<u8>, u32, &str, &str)> = vec![
            // The command comes first: nothing else matters when it is unknown.
            (
                without(env("GET"), "CNI_IFNAME"),
                b"nope".to_vec(),
                4,
                "CNI_COMMAND: unknown command \"GET\"",
                "1.1.0",
            ),
            (
                without(env("ADD"), "CNI_COMMAND"),
                b"nope".to_vec(),
                4,
                "CNI_COMMAND: is missing",
                "1.1.0",
            ),
            // Then the environment, before stdin is even decoded.
            (
                without(env("ADD"), "CNI_IFNAME"),
                b"nope".to_vec(),
                4,
                "CNI_IFNAME: is missing",
                "1.1.0",
            ),
            // Then JSON.
            (
                env("ADD"),
                b"nope".to_vec(),
                6,
                "stdin: the network configuration is not valid JSON",
                "1.1.0",
            ),
            (
                env("ADD"),
                b"".to_vec(),
                6,
                "stdin: the network configuration is not valid JSON",
                "1.1.0",
            ),
            (
                env("DEL"),
                b"[1]".to_vec(),
                6,
                "must be a JSON object, got an array",
                "1.1.0",
            ),
            // Then name and type (stating the request's version when it is good).
            (
                env("ADD"),
                json!({"cniVersion": "0.3.1", "type": "meshlane"})
                    .to_string()
                    .into_bytes(),
                7,
                "name: is missing",
                "0.3.1",
            ),
            (
                env("ADD"),
                json!({"cniVersion": "9.9.9", "name": "n"})
                    .to_string()
                    .into_bytes(),
                7,
                "type: is missing",
                "1.1.0",
            ),
            // Then the version.
            (
                env("ADD"),
                json!({"name": "n", "type": "meshlane"})
                    .to_string()
                    .into_bytes(),
                1,
                "cniVersion: is missing",
                "1.1.0",
            ),
            (
                env("DEL"),
                conf("0.2.0").to_string().into_bytes(),
                1,
                "version \"0.2.0\" is not supported",
                "1.1.0",
            ),
            // Then the command's gate.
            (
                env("CHECK"),
                with(conf("0.3.1"), "prevResult", bridge_result())
                    .to_string()
                    .into_bytes(),
                1,
                "version 0.3.1 does not allow CHECK",
                "0.3.1",
            ),
            (
                env("STATUS"),
                conf("1.0.0").to_string().into_bytes(),
                1,
                "version 1.0.0 does not allow STATUS",
                "1.0.0",
            ),
            (
                env("GC"),
                with(conf("1.0.0"), "cni.dev/valid-attachments", json!([]))
                    .to_string()
                    .into_bytes(),
                1,
                "version 1.0.0 does not allow GC",
                "1.0.0",
            ),
            // Then what the command needs from the configuration.
            (
                env("ADD"),
                with(
                    good.clone(),
                    "prevResult",
                    json!({"ips": [{"address": "10.0.0.300/24"}]}),
                )
                .to_string()
                .into_bytes(),
                6,
                "prevResult.ips[0].address: \"10.0.0.300/24\" is not an IP prefix",
                "1.1.0",
            ),
            (
                env("CHECK"),
                with(good.clone(), "prevResult", json!([]))
                    .to_string()
                    .into_bytes(),
                6,
                "prevResult: expected an object",
                "1.1.0",
            ),
            (
                env("CHECK"),
                good.to_string().into_bytes(),
                7,
                "prevResult: is missing",
                "1.1.0",
            ),
        ];
        for (vars, stdin, code, fragment, version) in table {
            let plugin = Recorder::default();
            let doc = run_with(&plugin, vars, &stdin).error(code, fragment);
            assert_eq!(doc["cniVersion"], json!(version), "{fragment}: {doc}");
            assert!(
                plugin.calls.borrow().is_empty(),
                "{fragment}: the plugin must not run"
            );
        }
    }

    struct BrokenWriter;
    impl Write for BrokenWriter {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_result_that_cannot_be_written_is_a_failure() {
        let plugin = Recorder::default();
        let stdin = conf("1.1.0").to_string();
        let code = |command, stdin: &str| {
            run(
                &plugin,
                env(command),
                &mut stdin.as_bytes(),
                &mut BrokenWriter,
            )
        };
        assert_eq!(code("ADD", &stdin), 1);
        assert_eq!(code("VERSION", ""), 1);
        // Commands without output do not touch stdout at all.
        assert_eq!(code("DEL", &stdin), 0);
    }

    #[test]
    fn every_error_document_has_the_spec_shape() {
        let plugin = Recorder::default();
        let doc = run_with(&plugin, env("ADD"), b"{").error(6, "stdin");
        let keys: Vec<&str> = doc
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["cniVersion", "code", "msg"]);
    }

    #[test]
    fn process_env_reads_the_real_environment() {
        // PATH is set in every test runner; this only proves the adapter works.
        assert!(process_env().any(|(key, _)| key == "PATH"));
    }
}

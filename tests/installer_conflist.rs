//! Golden tests of the conflist logic: each dir under `tests/golden/conflist/`
//! is a net.d dir `before/` install, the expected `after/`, and (when uninstall
//! does not give `before/` back byte for byte) `uninstalled/`. `case.json` says
//! what the case shows, the expected action and, optionally, a configured
//! primary name; `skipped.txt` lists the files the runtime passes over.
//!
//! Unprivileged: pure logic, no node. Regenerate the expected files after a
//! deliberate change with `MESHLANE_BLESS=1 cargo test --test installer_conflist`
//! and review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use meshlane::install::conflist::{
    self, plan_install, plan_uninstall, Action, ChainEntry, InstallOutcome,
};
use meshlane::install::netdir::{self, NetDir};
use meshlane::install::ConflistError;
use serde_json::{json, Value};

mod common;

use common::conflist::plugin_types;

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/conflist")
}

fn bless() -> bool {
    std::env::var_os("MESHLANE_BLESS").is_some()
}

/// The settings the DaemonSet's ConfigMap writes.
fn entry() -> ChainEntry {
    let settings = json!({
        "bpffsRoot": "/sys/fs/bpf/meshlane",
        "capture": "cni-args",
        "proxyUID": 1337,
        "proxyGID": 1337,
        "logFile": "/var/log/meshlane/cni.log",
        "logLevel": "info"
    });
    ChainEntry::new(settings.as_object().unwrap()).unwrap()
}

fn read_dir(dir: &Path) -> NetDir {
    let mut files = BTreeMap::new();
    for item in fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let item = item.unwrap();
        files.insert(
            item.file_name().into_string().unwrap(),
            fs::read(item.path()).unwrap(),
        );
    }
    files
}

fn write_dir(dir: &Path, files: &NetDir) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    for (name, contents) in files {
        fs::write(dir.join(name), contents).unwrap();
    }
}

fn show(files: &NetDir) -> String {
    files
        .iter()
        .map(|(name, contents)| format!("--- {name}\n{}", String::from_utf8_lossy(contents)))
        .collect()
}

/// Compares with the golden dir (or writes it when blessing).
fn expect_dir(case: &str, dir: &Path, got: &NetDir) {
    if bless() {
        write_dir(dir, got);
        return;
    }
    let want = read_dir(dir);
    assert!(
        &want == got,
        "case {case}: {} differs\n=== expected\n{}\n=== got\n{}",
        dir.display(),
        show(&want),
        show(got)
    );
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::InPlace => "in-place",
        Action::Appended => "appended",
        Action::Replaced => "replaced",
        Action::Wrapped { .. } => "wrapped",
    }
}

fn run_case(case_dir: &Path) {
    let case = case_dir.file_name().unwrap().to_string_lossy().into_owned();
    let meta: Value =
        serde_json::from_slice(&fs::read(case_dir.join("case.json")).unwrap()).unwrap();
    let configured = meta["configured"].as_str();
    let before = read_dir(&case_dir.join("before"));

    let plan = match plan_install(&before, configured, &entry()).unwrap() {
        InstallOutcome::Planned(plan) => plan,
        other => panic!("case {case}: no primary: {other:?}"),
    };
    assert_eq!(
        action_name(&plan.action),
        meta["action"].as_str().unwrap(),
        "case {case}"
    );
    let skipped: String = plan
        .skipped
        .iter()
        .map(|s| format!("{}: {}\n", s.file, s.reason))
        .collect();
    let skipped_file = case_dir.join("skipped.txt");
    if bless() {
        if skipped.is_empty() {
            let _ = fs::remove_file(&skipped_file);
        } else {
            fs::write(&skipped_file, &skipped).unwrap();
        }
    } else {
        let want = fs::read_to_string(&skipped_file).unwrap_or_default();
        assert_eq!(skipped, want, "case {case}: skipped files");
    }

    let after = conflist::apply_to(&before, &plan.changes);
    expect_dir(&case, &case_dir.join("after"), &after);

    // Every result is what a runtime accepts, with meshlane exactly once, last
    // unless it was already elsewhere, and the primary's cniVersion untouched.
    let primary = netdir::choose_primary(&after, configured)
        .unwrap()
        .primary
        .unwrap_or_else(|| panic!("case {case}: no valid config after install"));
    let list: Value = serde_json::from_slice(&after[&primary.file]).unwrap();
    let types = plugin_types(&list);
    assert_eq!(
        types.iter().filter(|t| **t == "meshlane").count(),
        1,
        "case {case}: {types:?}"
    );
    let original: Value = serde_json::from_slice(&before[&plan.primary]).unwrap();
    assert_eq!(
        list["cniVersion"], original["cniVersion"],
        "case {case}: cniVersion"
    );

    // Installing again changes nothing: the agent's own write must not wake it
    // into another write.
    match plan_install(&after, configured, &entry()).unwrap() {
        InstallOutcome::Planned(again) => {
            assert_eq!(again.action, Action::InPlace, "case {case}: not idempotent");
            assert!(again.changes.is_empty());
        }
        other => panic!("case {case}: {other:?}"),
    }
    assert!(conflist::is_in_place(&after, configured, &entry()));

    // Uninstall gives the original back.
    let uninstalled = conflist::apply_to(&after, &plan_uninstall(&after));
    let uninstalled_dir = case_dir.join("uninstalled");
    if uninstalled_dir.exists() || (bless() && uninstalled != before) {
        expect_dir(&case, &uninstalled_dir, &uninstalled);
    } else {
        assert!(
            uninstalled == before,
            "case {case}: uninstall did not restore the original\n=== before\n{}\n=== after uninstall\n{}",
            show(&before),
            show(&uninstalled)
        );
    }
    assert!(
        conflist::files_with_entry(&uninstalled).is_empty(),
        "case {case}"
    );
}

#[test]
fn golden_cases() {
    let mut cases: Vec<PathBuf> = fs::read_dir(golden_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases missing: {cases:?}");
    for case in cases {
        run_case(&case);
    }
}

fn dir(files: &[(&str, &str)]) -> NetDir {
    files
        .iter()
        .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
        .collect()
}

const BRIDGE_CONF: &str =
    "{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"n\",\n  \"type\": \"bridge\"\n}\n";

#[test]
fn a_wrapped_conf_that_would_not_be_picked_is_refused() {
    // "10-bridge.conf.json" sorts between "10-bridge.conf" and
    // "10-bridge.conflist" ('.' < 'l'): after wrapping it would become primary.
    let files = dir(&[
        ("10-bridge.conf", BRIDGE_CONF),
        ("10-bridge.conf.json", BRIDGE_CONF),
    ]);
    match plan_install(&files, None, &entry()) {
        Err(ConflistError::WrapNotPicked { picked, .. }) => {
            assert_eq!(picked, "10-bridge.conf.json")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_conf_rewritten_next_to_our_wrap_is_wrapped_again() {
    let first = match plan_install(&dir(&[("10-bridge.conf", BRIDGE_CONF)]), None, &entry()) {
        Ok(InstallOutcome::Planned(plan)) => plan,
        other => panic!("{other:?}"),
    };
    let mut files = conflist::apply_to(&NetDir::new(), &first.changes);
    // The primary CNI writes its .conf again (with a new setting).
    let rewritten = BRIDGE_CONF.replace("\"bridge\"", "\"bridge\",\n  \"mtu\": 1400");
    files.insert("10-bridge.conf".into(), rewritten.clone().into_bytes());
    let plan = match plan_install(&files, None, &entry()) {
        Ok(InstallOutcome::Planned(plan)) => plan,
        other => panic!("{other:?}"),
    };
    assert_eq!(plan.primary, "10-bridge.conf");
    let after = conflist::apply_to(&files, &plan.changes);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["10-bridge.conflist"]);
    let list: Value = serde_json::from_slice(&after["10-bridge.conflist"]).unwrap();
    assert_eq!(list["plugins"][0]["mtu"], 1400);
    assert_eq!(list["plugins"][1]["type"], "meshlane");
    // Uninstall restores the newest .conf.
    let restored = conflist::apply_to(&after, &plan_uninstall(&after));
    assert_eq!(restored["10-bridge.conf"], rewritten.as_bytes());
}

#[test]
fn uninstall_keeps_a_conf_the_primary_wrote_meanwhile() {
    let wrapped = r#"{"name":"n","meshlane.io/wrapped-from":"10-bridge.conf","plugins":[{"type":"bridge"},{"type":"meshlane"}]}"#;
    let files = dir(&[
        ("10-bridge.conflist", wrapped),
        ("10-bridge.conf", BRIDGE_CONF),
    ]);
    let after = conflist::apply_to(&files, &plan_uninstall(&files));
    assert_eq!(after.keys().collect::<Vec<_>>(), ["10-bridge.conf"]);
    assert_eq!(after["10-bridge.conf"], BRIDGE_CONF.as_bytes());
}

#[test]
fn old_cni_versions_cannot_be_chained() {
    let conf = r#"{"cniVersion":"0.2.0","name":"n","type":"bridge"}"#;
    assert!(matches!(
        plan_install(&dir(&[("10-bridge.conf", conf)]), None, &entry()),
        Err(ConflistError::Unsupported { .. })
    ));
    let list = r#"{"name":"n","plugins":[{"type":"bridge"}]}"#;
    assert!(matches!(
        plan_install(&dir(&[("10-bridge.conflist", list)]), None, &entry()),
        Err(ConflistError::Unsupported { .. })
    ));
}

#[test]
fn no_valid_config_means_waiting() {
    let files = dir(&[("00-broken.conflist", "{")]);
    match plan_install(&files, None, &entry()).unwrap() {
        InstallOutcome::NoPrimary { skipped } => assert_eq!(skipped[0].file, "00-broken.conflist"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn settings_the_plugin_refuses_are_refused_here() {
    let settings = json!({"bpffsRoot": "relative", "proxyUID": 1337});
    assert!(matches!(
        ChainEntry::new(settings.as_object().unwrap()),
        Err(ConflistError::Entry(_))
    ));
    let unknown = json!({"bpfRoot": "/x"});
    assert!(ChainEntry::new(unknown.as_object().unwrap()).is_err());
}

#[test]
fn the_entry_declares_the_pod_annotations_capability() {
    let value = entry().value();
    assert_eq!(value["type"], "meshlane");
    assert_eq!(
        value["capabilities"]["io.kubernetes.cri.pod-annotations"],
        true
    );
    assert_eq!(value["proxyUID"], 1337);
}

/// Istio's own CNI plugin in the primary config: meshlane does not chain
/// itself after it (both would capture the same pods) and says why; a config
/// without it (or with istio-cni only in a file the runtime does not pick)
/// is chained as usual.
#[test]
fn istio_cni_in_the_primary_config_is_refused() {
    let with_istio = r#"{"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
        {"type": "calico"}, {"type": "portmap"},
        {"type": "istio-cni", "kubernetes": {"kubeconfig": "/etc/cni/net.d/ZZZ-istio-cni-kubeconfig"}}]}"#;
    let files = dir(&[("10-calico.conflist", with_istio)]);
    match plan_install(&files, None, &entry()) {
        Err(err @ ConflistError::IstioCni { .. }) => {
            let text = err.to_string();
            assert!(text.contains("10-calico.conflist"), "{text}");
            assert!(text.contains("istio-cni"), "{text}");
        }
        other => panic!("istio-cni not refused: {other:?}"),
    }
    assert_eq!(
        conflist::istio_cni_primary(&files, None).as_deref(),
        Some("10-calico.conflist")
    );
    // A single-plugin .conf of istio-cni's type counts too.
    let single = dir(&[(
        "05-istio.conf",
        r#"{"cniVersion": "0.3.1", "name": "istio-cni", "type": "istio-cni"}"#,
    )]);
    assert!(matches!(
        plan_install(&single, None, &entry()),
        Err(ConflistError::IstioCni { .. })
    ));

    let without = dir(&[
        ("10-bridge.conf", BRIDGE_CONF),
        ("20-other.conflist", with_istio),
    ]);
    assert_eq!(conflist::istio_cni_primary(&without, None), None);
    assert!(matches!(
        plan_install(&without, None, &entry()),
        Ok(InstallOutcome::Planned(_))
    ));
}

//! What a privileged test needs from the machine, and where it is.
//!
//! Privileged tests fail loudly when they cannot run: a skipped test looks like a pass.

use std::path::{Path, PathBuf};

use super::mountinfo;

/// Directories searched for the reference CNI plugins, in order (Debian's package
/// installs to /usr/lib/cni, the upstream tarball to /opt/cni/bin).
const CNI_PLUGIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
/// The reference plugins a test node links into its CNI bin dir.
pub const REFERENCE_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];
/// The system interpreter, not a per-user one (pyenv shims live under /root, which
/// UID 1337 and other test users cannot read).
const PYTHON: &str = "/usr/bin/python3";
/// PATH for every process the harness starts (plugins, probes, Envoy).
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The binary under test.
pub fn meshlane_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_meshlane") {
        Some(path) => PathBuf::from(path),
        // An example using the harness (examples/node.rs) runs from
        // target/<profile>/examples/, next to the binary's directory.
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("meshlane")))
            .expect("the path of the running example"),
    }
}

/// Envoy: `$MESHLANE_ENVOY`, else where `scripts/deps.sh` puts it. Not under
/// CARGO_TARGET_DIR, which tests may point elsewhere.
pub fn envoy_binary() -> PathBuf {
    match std::env::var_os("MESHLANE_ENVOY") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/tools/envoy")),
    }
}

/// The first plugin dir holding a `bridge` plugin.
pub fn cni_plugin_dir() -> Option<PathBuf> {
    CNI_PLUGIN_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("bridge").is_file())
}

/// A tool of the venv `scripts/deps.sh` makes under target/tools (kubectl,
/// kubernetes-validate, its python with PyYAML); missing, the test fails.
pub fn venv_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("MESHLANE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/tools")));
    let path = dir.join("venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install the manifest tools with `sudo scripts/deps.sh`",
        path.display()
    );
    path
}

pub fn python() -> PathBuf {
    PathBuf::from(PYTHON)
}

/// A system tool (`ip`, `iptables-legacy-save`, …) looked up in [`CHILD_PATH`], so the
/// test runner's own PATH does not matter.
pub fn system_tool(name: &str) -> Option<PathBuf> {
    CHILD_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| is_executable(path))
}

/// `tests/tools/<name>`: the probes, servers and senders tests run inside pods.
pub fn test_tool(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
}

/// `tests/tools/probe.py`, the socket probe run inside pods.
pub fn probe_script() -> PathBuf {
    test_tool("probe.py")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Panics with every missing prerequisite when this test cannot run for real.
/// `TestNode::new` calls it; call it first in privileged tests without a node.
pub fn require_root() {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (run the privileged tests with sudo)".to_string());
    }
    if mountinfo::cgroup2_mount().is_none() {
        missing.push("a cgroup2 mount (none in /proc/self/mountinfo)".to_string());
    }
    match cni_plugin_dir() {
        None => missing.push(format!(
            "the CNI reference plugins ({} in {})",
            REFERENCE_PLUGINS.join(", "),
            CNI_PLUGIN_DIRS.join(" or ")
        )),
        Some(dir) => {
            for plugin in REFERENCE_PLUGINS {
                if !is_executable(&dir.join(plugin)) {
                    missing.push(format!("the CNI plugin {}", dir.join(plugin).display()));
                }
            }
        }
    }
    let envoy = envoy_binary();
    if !is_executable(&envoy) {
        missing.push(format!(
            "Envoy at {} (or set MESHLANE_ENVOY)",
            envoy.display()
        ));
    }
    if !is_executable(&python()) {
        missing.push(format!("{} (python3)", PYTHON));
    }
    if system_tool("ip").is_none() {
        missing.push("`ip` (iproute2)".to_string());
    }
    assert!(
        missing.is_empty(),
        "this privileged integration test cannot run; missing: {}.\n\
         Install the dependencies with `sudo scripts/deps.sh` and run the tests as root.",
        missing.join("; ")
    );
}

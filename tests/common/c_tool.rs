//! The C tools under `tests/tools/` that the harness builds with gcc on first use,
//! into a node's work dir (the temp dir goes with the node).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::prereq;

/// `tests/tools/<source>` built as `<work_dir>/<name>`, once per node.
pub fn build(work_dir: &Path, source: &str, name: &str) -> PathBuf {
    let out = work_dir.join(name);
    if out.exists() {
        return out;
    }
    let source = prereq::test_tool(source);
    // Built under a private name, then renamed: two tests of one node never see a
    // half-written binary.
    let partial = work_dir.join(format!("{name}.{}", std::process::id()));
    let built = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&partial)
        .arg(&source)
        .output()
        .unwrap_or_else(|err| panic!("gcc is needed to build {}: {err}", source.display()));
    assert!(
        built.status.success(),
        "gcc {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::rename(&partial, &out).unwrap_or_else(|err| panic!("rename {name}: {err}"));
    out
}

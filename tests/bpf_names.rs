//! The C↔Rust contract holds at compile time: a BPF program or map renamed in
//! `bpf/` without the Rust side following fails `cargo check` (the names are
//! checked against the skeletons' typed accessors in `src/datapath/names.rs`),
//! instead of failing at the first ADD on a node.
//!
//! The crate is copied to a scratch directory, the name is changed everywhere
//! under its `bpf/` (so the C still compiles), and `cargo check` must fail
//! naming it. The unchanged copy must pass first, or the failures would prove
//! nothing. Needs the build's own tools (clang, the crates in cargo's cache).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies what `cargo check --lib` needs into `dest`.
fn copy_crate(dest: &Path) {
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest).unwrap();
    for file in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        fs::copy(repo().join(file), dest.join(file)).unwrap();
    }
    for dir in ["src", "bpf"] {
        copy_dir(&repo().join(dir), &dest.join(dir));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Replaces the identifier `old` by `new` in every file under `<crate>/bpf`.
fn rename_in_bpf(crate_dir: &Path, old: &str, new: &str) {
    let mut changed = 0;
    for entry in fs::read_dir(crate_dir.join("bpf")).unwrap().flatten() {
        let text = fs::read_to_string(entry.path()).unwrap();
        let renamed = replace_identifier(&text, old, new);
        if renamed != text {
            changed += 1;
            fs::write(entry.path(), renamed).unwrap();
        }
    }
    assert!(changed > 0, "{old} appears nowhere under bpf/");
}

/// `old` as a whole identifier (not as part of a longer one).
fn replace_identifier(text: &str, old: &str, new: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(old) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + old.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(old);
        } else {
            out.push_str(new);
        }
        rest = &rest[at + old.len()..];
    }
    out.push_str(rest);
    out
}

/// `cargo check --lib` of the copy, sharing one target dir between runs (the
/// dependencies are checked once).
fn cargo_check(crate_dir: &Path) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["check", "--lib", "--locked", "--offline", "--quiet"])
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", repo().join("target/bpf-names"))
        .output()
        .expect("running cargo check");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_renamed_program_or_map_fails_the_build() {
    let scratch = std::env::temp_dir().join(format!("meshlane-bpf-names-{}", std::process::id()));

    copy_crate(&scratch);
    let (ok, log) = cargo_check(&scratch);
    assert!(ok, "the unchanged copy must build:\n{log}");

    for (kind, old) in [("program", "ml_connect4"), ("map", "ml_pods")] {
        copy_crate(&scratch);
        rename_in_bpf(&scratch, old, &format!("{old}_renamed"));
        let (ok, log) = cargo_check(&scratch);
        assert!(!ok, "renaming the {kind} {old} in bpf/ still builds");
        assert!(
            log.contains(&format!("no field `{old}`")),
            "the build must fail on the {kind}'s name, not elsewhere:\n{log}"
        );
    }
    let _ = fs::remove_dir_all(&scratch);
}

//! Compiles every `bpf/<job>.bpf.c` into a libbpf skeleton (`$OUT_DIR/<job>.skel.rs`).
//! The objects are embedded in the binary: nodes never need clang.

use std::env;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

const BPF_DIR: &str = "bpf";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang_args = clang_args();

    println!("cargo:rerun-if-changed={BPF_DIR}");
    for source in bpf_sources() {
        let job = source
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".bpf.c"))
            .expect("bpf_sources only returns *.bpf.c files")
            .to_owned();
        let skeleton = out_dir.join(format!("{job}.skel.rs"));
        if let Err(err) = SkeletonBuilder::new()
            .source(&source)
            .clang_args(&clang_args)
            .build_and_generate(&skeleton)
        {
            panic!("building the BPF skeleton of {}: {err:#}", source.display());
        }
        println!("cargo:rerun-if-changed={}", source.display());
    }
}

fn bpf_sources() -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(BPF_DIR)
        .expect("the bpf/ directory is part of the crate")
        .map(|entry| entry.expect("readable bpf/ entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".bpf.c"))
        })
        .collect();
    sources.sort();
    sources
}

/// The UAPI headers (`linux/bpf.h`) include `asm/types.h`, which Debian keeps under the
/// target's multiarch directory; clang targeting BPF does not look there by itself.
fn clang_args() -> Vec<String> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => panic!("meshlane's BPF build knows no multiarch include dir for {other}"),
    };
    let mut args = vec![
        format!("-I{}", Path::new(BPF_DIR).display()),
        format!("-I/usr/include/{multiarch}"),
        "-Wall".to_owned(),
        "-Werror".to_owned(),
    ];
    // clang-14 warns about the unused contract enums' helper functions otherwise.
    args.push("-Wno-unused-function".to_owned());
    args
}

//! The node's images, made here from files (no registry is reachable):
//! `tests/tools/images.py` writes each as an OCI archive once per test process;
//! every node imports them into its own containerd.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::super::exec::run_ok;
use super::super::prereq::python;

pub const APP_IMAGE: &str = "meshlane.test/app:1";
pub const ENVOY_IMAGE: &str = "meshlane.test/envoy:1.40.0";

/// One archive images.py wrote.
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub name: String,
    pub reference: String,
    pub archive: PathBuf,
}

const IMAGES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/images.py");

/// pause, Envoy, the app and the install image (the static meshlane that
/// `install/build-static.sh` builds from this tree, as install/Dockerfile
/// describes), built once per test process.
pub fn test_images() -> &'static [ImageArchive] {
    static IMAGES: OnceLock<Vec<ImageArchive>> = OnceLock::new();
    IMAGES.get_or_init(|| build(&[]))
}

/// The install image once more under another tag: the "new version" an
/// upgrade rolls out (same binary; tests make the running programs differ).
pub fn install_image_tagged(tag: &str) -> ImageArchive {
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-images"))
        .join(format!("install-{tag}"));
    build(&[
        "--only".into(),
        "install".into(),
        "--install-tag".into(),
        tag.into(),
        "--out".into(),
        out.display().to_string(),
    ])
    .remove(0)
}

fn build(extra: &[String]) -> Vec<ImageArchive> {
    run_ok(Command::new(python()).arg(IMAGES_SCRIPT).args(extra))
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            let image: Value = serde_json::from_str(line).expect("images.py prints JSON lines");
            ImageArchive {
                name: image["name"].as_str().unwrap().to_owned(),
                reference: image["ref"].as_str().unwrap().to_owned(),
                archive: PathBuf::from(image["archive"].as_str().unwrap()),
            }
        })
        .collect()
}

/// The install image's reference (`ghcr.io/meshlane/meshlane:<version>`).
pub fn install_reference() -> String {
    test_images()
        .iter()
        .find(|image| image.name == "install")
        .expect("images.py builds the install image")
        .reference
        .clone()
}

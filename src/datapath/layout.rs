//! Where meshlane's pins live under its bpffs root (default `/sys/fs/bpf/meshlane`).
//!
//! ```text
//! <root>/maps/ml_*           maps, shared by every object and process
//! <root>/links/<program>     node-wide links (cgroup programs; sk_msg on ml_short_tx)
//! <root>/progs/<program>     programs linked per pod (sk_lookup); sk_msg when the
//!                            kernel has no sk_msg links (< 6.10) and it is attached
//!                            to the map itself
//! <root>/inbound/<cookie>    a pod's inbound steering link, by netns cookie
//! <root>/netns_tags/progs/   the tag programs, hi0..hi63 and lo0..lo63 (netns_tag.rs)
//! <root>/netns_tags/links/<cookie>/<slot>-hi, -lo   a pod's two tag links
//! ```

use std::path::{Path, PathBuf};

pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/meshlane";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PinLayout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn progs_dir(&self) -> PathBuf {
        self.root.join("progs")
    }

    pub fn inbound_dir(&self) -> PathBuf {
        self.root.join("inbound")
    }

    /// The tag programs that tell sk_lookup its netns (netns_tag.rs).
    pub fn tag_progs_dir(&self) -> PathBuf {
        self.root.join("netns_tags").join("progs")
    }

    /// The pods' tag links.
    pub fn tag_links_dir(&self) -> PathBuf {
        self.root.join("netns_tags").join("links")
    }

    pub fn prog(&self, name: &str) -> PathBuf {
        self.progs_dir().join(name)
    }

    /// The pinned sk_lookup link of the pod whose netns has this cookie.
    pub fn inbound_link(&self, netns_cookie: u64) -> PathBuf {
        self.inbound_dir().join(netns_cookie.to_string())
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    pub fn link(&self, name: &str) -> PathBuf {
        self.links_dir().join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_sit_under_the_root() {
        let layout = PinLayout::new("/sys/fs/bpf/test");
        assert_eq!(
            layout.map("ml_pods"),
            Path::new("/sys/fs/bpf/test/maps/ml_pods")
        );
        assert_eq!(
            layout.link("connect4"),
            Path::new("/sys/fs/bpf/test/links/connect4")
        );
    }
}

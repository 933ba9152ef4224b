//! Everything that touches the kernel's BPF side: loading and attaching the
//! node-wide programs, replacing them on upgrade, the pin layout, and the
//! per-pod map records.

pub mod abi;
pub mod attachment;
pub mod bpffs;
pub mod cgroup;
pub mod counters;
pub mod error;
mod feature_probe;
pub mod features;
pub mod inbound_link;
pub mod inventory;
pub mod layout;
mod link_create;
pub mod link_detach;
pub mod listeners;
pub mod loader;
pub mod lock;
pub mod map_compat;
pub mod names;
pub mod netns_tag;
pub mod object_load;
pub mod pinned_map;
pub mod pod_index;
pub mod pod_record;
pub mod pod_state;
pub mod prog_identity;
pub mod relink;
pub mod skel;
pub mod upgrade;
pub mod upgrade_report;
mod verifier_log;

pub use attachment::{Attachment, AttachmentKey};
pub use error::DatapathError;
pub use layout::{PinLayout, DEFAULT_PIN_ROOT};
pub use loader::{ensure_attached, AttachOutcome};
pub use pod_record::PodEntries;
pub use pod_state::PodMaps;
pub use upgrade::{upgrade_programs, UpgradeMode};
pub use upgrade_report::{Outcome, ProgramUpgrade, Target, UpgradeReport};

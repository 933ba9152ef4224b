//! Everything that touches the kernel's BPF side: loading and attaching the
//! node-wide programs, the pin layout, and the per-pod map records.

pub mod abi;
pub mod attachment;
pub mod bpffs;
pub mod cgroup;
pub mod counters;
pub mod error;
pub mod inbound_link;
pub mod layout;
pub mod loader;
pub mod lock;
pub mod pinned_map;
pub mod pod_record;
pub mod pod_state;
pub mod skel;
mod verifier_log;

pub use attachment::{Attachment, AttachmentKey};
pub use error::DatapathError;
pub use layout::{PinLayout, DEFAULT_PIN_ROOT};
pub use loader::{ensure_attached, AttachOutcome};
pub use pod_record::PodEntries;
pub use pod_state::PodMaps;

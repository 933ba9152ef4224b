//! Pure decisions: which pods are captured and with what settings. No I/O here,
//! so every rule is unit tested as a table.

pub mod annotations;
pub mod cidr;
pub mod istio_selection;
pub mod kuma_annotations;
pub mod kuma_selection;
pub mod linkerd_annotations;
pub mod linkerd_selection;
pub mod mesh;
pub mod pod_capture;
pub mod pod_meta;
pub mod selection;
pub mod short_path;
pub mod short_path_kernels;

pub use cidr::Cidr;
pub use mesh::Mesh;
pub use pod_capture::{CidrSelection, PodCapture, PortSelection};
pub use selection::{CaptureMode, Selection};

/// The value a configuration keyword names in a `KEY_VALUES` table (`Mesh`,
/// `CaptureMode`): exact and case-sensitive, as the configuration is written.
fn by_keyword<T: Copy>(table: &[(&str, T)], text: &str) -> Option<T> {
    table
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
}

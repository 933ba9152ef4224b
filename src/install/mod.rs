//! The node side of meshlane: what the install DaemonSet runs (`meshlane
//! install`), how it takes itself off a node (`meshlane uninstall`), and the
//! checks an operator runs first (`meshlane precheck`).
//!
//! Pure logic (which CNI config the runtime uses, how meshlane's entry goes in
//! and out of it, metrics text, settings) sits apart from the thin I/O edges
//! (files, inotify, the HTTP listener, BPF), so it is tested without a node.

pub mod agent;
pub mod cilium;
pub mod cluster;
pub mod conflist;
pub mod enroll;
pub mod error;
pub mod files;
pub mod flags;
pub mod http;
pub mod json_text;
pub mod log_tail;
pub mod metrics;
pub mod netdir;
pub mod plugin_kubeconfig;
pub mod precheck;
pub mod process_metrics;
pub mod program_upgrade;
pub mod settings;
pub mod startup_taint;
pub mod uninstall;
pub mod watch;

pub use error::{ConflistError, InstallError};

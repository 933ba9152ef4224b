//! meshlane: a chained CNI plugin that replaces Istio's iptables sidecar capture
//! with eBPF. docs/architecture.md explains how it works and why.

pub mod cli;
pub mod cni;
pub mod datapath;
pub mod install;
mod json_kind;
pub mod kube;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod plugin;
pub mod policy;

// Property tests of the parsers of untrusted input (docs/reliability.md).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod scratch;

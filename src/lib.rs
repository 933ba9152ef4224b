//! meshlane: a chained CNI plugin that replaces Istio's iptables sidecar capture
//! with eBPF. See DESIGN.md in the docs for the architecture.

pub mod cli;
pub mod cni;
pub mod datapath;
pub mod install;
pub mod kube;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod plugin;
pub mod policy;

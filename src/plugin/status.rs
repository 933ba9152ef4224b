//! CNI STATUS (1.1): ready when an ADD could set a pod up — the cgroup is a
//! cgroup v2 directory and the pin root lies on a bpffs.

use crate::cni::{CniError, NetConf};
use crate::datapath::bpffs;
use crate::datapath::cgroup::Cgroup;

use super::context::Context;

pub fn status(netconf: &NetConf) -> Result<(), CniError> {
    let context = Context::for_netconf("STATUS", netconf)?;
    let cgroup = context
        .cgroup()
        .map_err(|err| CniError::plugin_not_available(err.msg))?;
    Cgroup::open(&cgroup).map_err(|err| CniError::plugin_not_available(err.to_string()))?;
    bpffs::check_root(&context.layout)
        .map_err(|err| CniError::plugin_not_available(err.to_string()))?;
    Ok(())
}

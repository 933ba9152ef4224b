//! The proxy's inbound listeners in `ml_inbound_listeners`, from user space.
//!
//! `sockops` registers a listener when it is created (`TCP_LISTEN_CB`), which
//! covers every pod captured at its ADD: its proxy starts afterwards. A pod
//! captured while it already runs (enrollment) has a proxy whose listeners
//! exist already and will never pass `TCP_LISTEN_CB` again; without this, its
//! inbound steering would find no listener and refuse every connection until
//! the proxy restarts. The rule is the BPF one: only wildcard listeners on the
//! pod's inbound port, one slot each.

use std::os::fd::{AsRawFd, BorrowedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::abi::{ml_limits, ml_listener_key, MapBytes};
use super::error::DatapathError;
use super::layout::PinLayout;
use super::names::maps;

const MAP: &str = maps::INBOUND_LISTENERS;

/// Puts a listening socket into the pod's first free slot of its family.
/// Returns `false` when every slot is taken (as `sockops` does, it is then not
/// registered; the pod's other listeners still take connections).
pub fn register_listener(
    layout: &PinLayout,
    netns_cookie: u64,
    family: u32,
    socket: BorrowedFd<'_>,
) -> Result<bool, DatapathError> {
    let path = layout.map(MAP);
    let map = MapHandle::from_pinned_path(&path)
        .map_err(|source| DatapathError::OpenMap { path, source })?;
    let fd = u64::try_from(socket.as_raw_fd()).expect("a valid fd is not negative");
    for slot in 0..ml_limits::ML_MAX_LISTENER_SLOTS.0 {
        let key = ml_listener_key {
            netns_cookie,
            family,
            slot,
        };
        match map.update(key.as_bytes(), &fd.to_ne_bytes(), MapFlags::NO_EXIST) {
            Ok(()) => return Ok(true),
            Err(err) if err.kind() == libbpf_rs::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(DatapathError::MapAccess {
                    operation: "update",
                    map: MAP,
                    source,
                })
            }
        }
    }
    Ok(false)
}

/// The socket cookies registered for a pod (a sockhash answers a user-space
/// lookup with the socket's cookie).
pub fn registered_cookies(
    layout: &PinLayout,
    netns_cookie: u64,
) -> Result<Vec<u64>, DatapathError> {
    let path = layout.map(MAP);
    let map = MapHandle::from_pinned_path(&path)
        .map_err(|source| DatapathError::OpenMap { path, source })?;
    let mut cookies = Vec::new();
    for key in map.keys() {
        let Some(parsed) = ml_listener_key::from_bytes(&key) else {
            continue;
        };
        if parsed.netns_cookie != netns_cookie {
            continue;
        }
        if let Ok(Some(value)) = map.lookup(&key, MapFlags::ANY) {
            if let Ok(bytes) = <[u8; 8]>::try_from(value.as_slice()) {
                cookies.push(u64::from_ne_bytes(bytes));
            }
        }
    }
    Ok(cookies)
}

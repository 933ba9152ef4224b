//! The listeners a running pod's proxy already has, for an enrolled pod's
//! inbound steering (see `datapath::listeners` for why).
//!
//! Each of the pod's processes is looked at through `/proc/<pid>/fd`; its
//! sockets are duplicated into the agent with `pidfd_getfd` (Linux 5.6; the
//! agent is privileged), and a TCP socket that listens on the wildcard address
//! of the pod's inbound port is registered once (a socket shared by several
//! processes or descriptors is one socket).

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockaddrStorage};

use crate::datapath::listeners::{register_listener, registered_cookies};
use crate::datapath::pod_state::PodSummary;
use crate::datapath::PinLayout;
use crate::netns;

use super::procfs::PodProcess;

/// Registers the pod's existing inbound listeners; returns how many.
pub fn adopt_listeners(
    layout: &PinLayout,
    netns_cookie: u64,
    pod: &PodSummary,
    processes: &[PodProcess],
    proc_root: &Path,
) -> Result<usize, String> {
    if !pod.captures_inbound {
        return Ok(0);
    }
    let mut known: BTreeSet<u64> = registered_cookies(layout, netns_cookie)
        .map_err(|err| err.to_string())?
        .into_iter()
        .collect();
    let mut adopted = 0;
    for process in processes {
        for socket in sockets_of(process.pid, proc_root) {
            let Some(family) = inbound_listener_family(&socket, pod.inbound_port) else {
                continue;
            };
            // SO_COOKIE: the socket's identity, as the sockhash reports it.
            let Ok(cookie) = netns::socket_u64_option(&socket, libc::SO_COOKIE) else {
                continue;
            };
            if !known.insert(cookie) {
                continue;
            }
            if register_listener(layout, netns_cookie, family, socket.as_fd())
                .map_err(|err| err.to_string())?
            {
                adopted += 1;
            }
        }
    }
    Ok(adopted)
}

/// The family of a wildcard TCP listener on `port`, `None` for anything else.
fn inbound_listener_family(socket: &OwnedFd, port: u16) -> Option<u32> {
    if !getsockopt(socket, sockopt::AcceptConn).ok()? {
        return None;
    }
    if getsockopt(socket, sockopt::SockType).ok()? != nix::sys::socket::SockType::Stream {
        return None;
    }
    let local: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(socket)).ok()?;
    if let Some(v4) = local.as_sockaddr_in() {
        let wildcard = v4.ip().is_unspecified();
        return (wildcard && v4.port() == port).then_some(libc::AF_INET as u32);
    }
    if let Some(v6) = local.as_sockaddr_in6() {
        let wildcard = v6.ip().is_unspecified();
        return (wildcard && v6.port() == port).then_some(libc::AF_INET6 as u32);
    }
    None
}

/// The process's sockets, duplicated into this process. A process that exits
/// or denies access meanwhile gives none.
fn sockets_of(pid: u32, proc_root: &Path) -> Vec<OwnedFd> {
    let Ok(entries) = fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return Vec::new();
    };
    let Some(pidfd) = pidfd_open(pid) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            fs::read_link(entry.path())
                .map(|target| target.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|target_fd| pidfd_getfd(&pidfd, target_fd))
        .collect()
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative result is a new fd this process owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_getfd(pidfd: &OwnedFd, target_fd: i32) -> Option<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes a pidfd, the target's fd number and flags
    // (0) and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    // SAFETY: a non-negative result is a new fd this process owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

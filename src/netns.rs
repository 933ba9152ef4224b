//! Entering a pod's network namespace. The guard is bound to the thread that
//! entered (setns changes only the calling thread) and restores the original
//! namespace when dropped.

use std::fs::File;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, CloneFlags};

use crate::netlink::Route;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path} does not exist")]
    Gone { path: PathBuf },
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("entering network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("reading the netns cookie of {path}: {source} (SO_NETNS_COOKIE needs kernel >= 5.14)")]
    Cookie { path: PathBuf, source: nix::Error },
    #[error("listing addresses in {path}: {source}")]
    Addresses { path: PathBuf, source: nix::Error },
    #[error("listing routes in {path}: {source}")]
    Routes {
        path: PathBuf,
        source: crate::netlink::NetlinkError,
    },
}

/// While alive, the current thread is inside another network namespace.
pub struct NetnsGuard {
    original: File,
    // setns affects the calling thread only: the guard must not move to another.
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    pub fn enter(path: &Path) -> Result<Self, NetnsError> {
        let target = File::open(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => NetnsError::Gone {
                path: path.to_path_buf(),
            },
            _ => NetnsError::Open {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let original =
            File::open("/proc/thread-self/ns/net").map_err(|source| NetnsError::Open {
                path: PathBuf::from("/proc/thread-self/ns/net"),
                source,
            })?;
        setns(&target, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(NetnsGuard {
            original,
            _not_send: PhantomData,
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(err) = setns(&self.original, CloneFlags::CLONE_NEWNET) {
            // Every later socket of this thread would live in the pod: stop here.
            eprintln!("meshlane: cannot return to the original network namespace: {err}");
            std::process::abort();
        }
    }
}

/// What meshlane needs to know of a pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsFacts {
    /// The kernel's cookie for the namespace (`bpf_get_netns_cookie` on the BPF side).
    pub cookie: u64,
    /// Every address configured in the namespace, with its interface.
    pub interface_addresses: Vec<(String, IpAddr)>,
    /// The main table's routes (read only when asked for).
    pub routes: Vec<Route>,
    /// The namespace belongs to a user namespace other than meshlane's (a pod
    /// with `hostUsers: false`): UIDs seen by the kernel are then mapped.
    pub in_user_namespace: bool,
}

impl NetnsFacts {
    pub fn has_address(&self, ip: &IpAddr) -> bool {
        self.interface_addresses.iter().any(|(_, addr)| addr == ip)
    }
}

/// Reads the cookie, addresses (and, when asked, routes) of the netns at `path`.
pub fn inspect(path: &Path, with_routes: bool) -> Result<NetnsFacts, NetnsError> {
    let in_user_namespace = owned_by_other_user_namespace(path)?;
    let _inside = NetnsGuard::enter(path)?;
    let cookie = current_netns_cookie().map_err(|source| NetnsError::Cookie {
        path: path.to_path_buf(),
        source,
    })?;
    let interface_addresses = nix::ifaddrs::getifaddrs()
        .map_err(|source| NetnsError::Addresses {
            path: path.to_path_buf(),
            source,
        })?
        .filter_map(|ifaddr| {
            let addr = ifaddr.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some((ifaddr.interface_name, ip))
        })
        .collect();
    let routes = if with_routes {
        crate::netlink::main_routes().map_err(|source| NetnsError::Routes {
            path: path.to_path_buf(),
            source,
        })?
    } else {
        Vec::new()
    };
    Ok(NetnsFacts {
        cookie,
        interface_addresses,
        routes,
        in_user_namespace,
    })
}

/// `ioctl(NS_GET_USERNS)`: the user namespace that owns a namespace (`libc::Ioctl`:
/// the request is an unsigned long in glibc, an int in musl).
const NS_GET_USERNS: libc::Ioctl = 0xb701;

/// True when the netns at `path` belongs to another user namespace than ours.
fn owned_by_other_user_namespace(path: &Path) -> Result<bool, NetnsError> {
    let open_err = |source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    };
    let netns = File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => NetnsError::Gone {
            path: path.to_path_buf(),
        },
        _ => open_err(source),
    })?;
    // SAFETY: an ioctl without argument on a namespace descriptor we own.
    let owner = unsafe { libc::ioctl(netns.as_raw_fd(), NS_GET_USERNS) };
    if owner < 0 {
        return Err(open_err(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor returned by the kernel, owned by nobody else.
    let owner = File::from(unsafe { OwnedFd::from_raw_fd(owner) });
    let ours = std::fs::metadata("/proc/self/ns/user").map_err(open_err)?;
    let theirs = owner.metadata().map_err(open_err)?;
    Ok(theirs.ino() != ours.ino() || theirs.dev() != ours.dev())
}

/// The cookie of the calling thread's network namespace.
pub fn current_netns_cookie() -> Result<u64, nix::Error> {
    // SAFETY: plain socket(2); the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    socket_u64_option(&socket, libc::SO_NETNS_COOKIE)
}

/// A 64-bit `SOL_SOCKET` option (`SO_NETNS_COOKIE`, `SO_COOKIE`), which nix
/// does not wrap.
pub fn socket_u64_option(socket: &OwnedFd, option: libc::c_int) -> Result<u64, nix::Error> {
    let mut value: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_netns_is_reported_as_gone() {
        let err = NetnsGuard::enter(Path::new("/run/netns/meshlane-does-not-exist")).err();
        assert!(matches!(err, Some(NetnsError::Gone { .. })));
    }

    #[test]
    fn the_current_netns_has_a_stable_cookie() {
        let first = current_netns_cookie().unwrap();
        assert_eq!(first, current_netns_cookie().unwrap());
        assert_ne!(first, 0);
    }
}

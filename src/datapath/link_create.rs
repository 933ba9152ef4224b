//! `BPF_LINK_CREATE` of a loaded program on a target that is not a cgroup (a
//! network namespace for sk_lookup, a sockhash for sk_msg), where libbpf-rs's own
//! calls want a `Program` we no longer hold: the link as a descriptor, to pin.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;

/// Links `prog` to `target` as `attach_type` (`BPF_SK_LOOKUP`, ...); the error is
/// the kernel's errno.
pub fn link_create(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: u32,
) -> std::io::Result<OwnedFd> {
    // SAFETY: both descriptors are open for the duration of the call; no options.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            target.as_raw_fd(),
            attach_type,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh link descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

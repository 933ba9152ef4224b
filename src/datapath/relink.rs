//! Swapping the program behind an attachment without detaching it: each hook
//! runs the old program until the kernel switches it to the new one, and never
//! none.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use libbpf_rs::libbpf_sys;

use super::bpffs;

/// `bpf_link_update`: the link keeps its id, its hook and its pin, and runs `new`
/// from now on. With `BPF_F_REPLACE` the kernel swaps only if the link still runs
/// `expected`: a program someone else swapped in meanwhile is never overwritten
/// blindly (EPERM instead).
pub fn update_link(
    link: BorrowedFd<'_>,
    new: BorrowedFd<'_>,
    expected: BorrowedFd<'_>,
) -> io::Result<()> {
    let opts = libbpf_sys::bpf_link_update_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_update_opts>() as _,
        flags: libbpf_sys::BPF_F_REPLACE,
        old_prog_fd: expected.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: three descriptors open for the duration of the call, and options
    // that outlive it.
    let rc = unsafe { libbpf_sys::bpf_link_update(link.as_raw_fd(), new.as_raw_fd(), &opts) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

/// `BPF_PROG_ATTACH` of an `sk_msg` program to a sockhash that has no link
/// (kernels before 6.10): the map's program is exchanged in one step.
pub fn reattach_to_map(prog: BorrowedFd<'_>, map: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: both descriptors are open for the duration of the call.
    let rc = unsafe {
        libbpf_sys::bpf_prog_attach(
            prog.as_raw_fd(),
            map.as_raw_fd(),
            libbpf_sys::BPF_SK_MSG_VERDICT,
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

/// Re-pins `path` to `fd` so that the path names the old object until the very
/// moment it names the new one: pin under a temporary name next to it, then
/// rename(2) over it (bpffs renames like any filesystem, replacing the target).
/// Readers of the pin (a CNI ADD linking the pod program) see one or the other.
pub fn replace_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pin path has no name"))?;
    // bpffs refuses names with a dot ("reserved for future use").
    let staged = path.with_file_name(format!("{}-next", name.to_string_lossy()));
    // Left over by a process that died between pin and rename.
    if let Err(err) = std::fs::remove_file(&staged) {
        if err.kind() != io::ErrorKind::NotFound {
            return Err(err);
        }
    }
    bpffs::pin_fd(fd, &staged)?;
    std::fs::rename(&staged, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&staged);
    })
}

//! The attach-mode probes behind `features`: each loads a two-instruction program
//! (`r0 = 1; exit`: allow, or `SK_PASS`) and, for `sk_msg`, creates a one-entry
//! sockhash of its own. Nothing is attached to a cgroup or a network namespace:
//! those links are asked for with no target at all (fd -1), which a kernel that
//! has them answers `EBADF` (it looked for the target) and one without answers
//! `EINVAL` (it does not know the attach type). Everything is closed on return.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys::{self, bpf_insn};

/// Kernels answer an attach type they cannot link with one of these.
const NO_SUCH_ATTACH_MODE: [i32; 3] = [libc::EINVAL, libc::EOPNOTSUPP, 524 /* ENOTSUPP */];

/// `r0 = 1; exit`.
fn return_one() -> [bpf_insn; 2] {
    const BPF_ALU64_MOV_K: u8 = 0xb7;
    const BPF_JMP_EXIT: u8 = 0x95;
    let insn = |code, dst, imm| bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: bpf_insn::new_bitfield_1(dst, 0),
        off: 0,
        imm,
    };
    [insn(BPF_ALU64_MOV_K, 0, 1), insn(BPF_JMP_EXIT, 0, 0)]
}

fn errno_text(step: &str, rc: i32) -> String {
    format!("{step}: {}", std::io::Error::from_raw_os_error(-rc))
}

fn load(prog_type: u32, expected_attach_type: u32) -> Result<OwnedFd, String> {
    let insns = return_one();
    let license = CString::new("GPL").expect("no NUL");
    let opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type,
        ..Default::default()
    };
    let mut opts = opts;
    // SAFETY: `insns`, `license` and `opts` outlive the call; the kernel copies them.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            std::ptr::null(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(errno_text("loading a probe program", fd));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockhash() -> Result<OwnedFd, String> {
    // SAFETY: no name, no options; sizes a sockhash accepts (u32 key, u32 fd value).
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            libbpf_sys::BPF_MAP_TYPE_SOCKHASH,
            std::ptr::null(),
            4,
            4,
            1,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(errno_text("creating a probe sockhash", fd));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_LINK_CREATE` of `prog` on `target`; a link that was made is closed at once.
fn link_create(prog: &OwnedFd, target: i32, attach_type: u32) -> Result<bool, String> {
    // SAFETY: `prog` is open for the call; `target` is either open or -1, which the
    // kernel rejects by itself; no options.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), target, attach_type, std::ptr::null())
    };
    if fd >= 0 {
        // SAFETY: a fresh link descriptor that nothing else owns; dropping it
        // detaches whatever it attached to the probe's own map.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        return Ok(true);
    }
    match -fd {
        libc::EBADF if target < 0 => Ok(true),
        errno if NO_SUCH_ATTACH_MODE.contains(&errno) => Ok(false),
        _ => Err(errno_text("creating a probe link", fd)),
    }
}

/// Links of cgroup programs (what `connect4` and the others are pinned as).
pub fn cgroup_link() -> Result<bool, String> {
    let attach = libbpf_sys::BPF_CGROUP_INET4_CONNECT;
    let prog = load(libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCK_ADDR, attach)?;
    link_create(&prog, -1, attach)
}

/// Links of `sk_lookup` programs to a network namespace.
pub fn netns_link() -> Result<bool, String> {
    let attach = libbpf_sys::BPF_SK_LOOKUP;
    let prog = load(libbpf_sys::BPF_PROG_TYPE_SK_LOOKUP, attach)?;
    link_create(&prog, -1, attach)
}

/// `BPF_PROG_ATTACH` of an `sk_msg` program to a sockhash.
pub fn sk_msg_map_attach() -> Result<bool, String> {
    let attach = libbpf_sys::BPF_SK_MSG_VERDICT;
    let prog = load(libbpf_sys::BPF_PROG_TYPE_SK_MSG, attach)?;
    let map = sockhash()?;
    // SAFETY: both descriptors are open for the call; the map holds the program
    // until the map is closed below.
    let rc = unsafe { libbpf_sys::bpf_prog_attach(prog.as_raw_fd(), map.as_raw_fd(), attach, 0) };
    match -rc {
        0 => Ok(true),
        errno if NO_SUCH_ATTACH_MODE.contains(&errno) => Ok(false),
        _ => Err(errno_text("attaching a probe sk_msg program", rc)),
    }
}

/// `BPF_LINK_CREATE` of an `sk_msg` program on a sockhash (6.10+).
pub fn sk_msg_link() -> Result<bool, String> {
    let attach = libbpf_sys::BPF_SK_MSG_VERDICT;
    let prog = load(libbpf_sys::BPF_PROG_TYPE_SK_MSG, attach)?;
    let map = sockhash()?;
    link_create(&prog, map.as_raw_fd(), attach)
}

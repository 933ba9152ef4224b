//! What a loaded program is, as the kernel reports it: enough to tell whether the
//! program attached on a node is the one this build would load.
//!
//! The kernel's tag is a hash of the instructions as loaded, with map references
//! blanked, so the same code loaded twice has the same tag. It does not cover
//! the `const volatile` settings, which live in the object's read-only data map
//! (`<object>.rodata`) and which the verifier folds into the code: a default
//! changed between versions changes behaviour but not the tag. Their content
//! counts too.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle};

/// The suffix libbpf gives an object's read-only data map (`shortpat.rodata`).
const SETTINGS_MAP_SUFFIX: &str = ".rodata";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramIdentity {
    pub id: u32,
    /// The kernel's name of the program (the function name, at most 15 bytes).
    pub name: String,
    /// `bpf_prog_type`.
    pub prog_type: u32,
    pub tag: [u8; 8],
    /// The content of each read-only data map the program reads, by map name.
    pub settings: Vec<(String, Vec<u8>)>,
}

impl ProgramIdentity {
    pub fn of_fd(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let mut map_ids = Vec::new();
        let counted = prog_info(fd, &mut map_ids)?;
        map_ids.resize(counted.nr_map_ids as usize, 0);
        let info = prog_info(fd, &mut map_ids)?;
        map_ids.truncate(info.nr_map_ids as usize);
        let mut settings = Vec::new();
        for id in map_ids {
            if let Some(entry) = settings_of_map(id)? {
                settings.push(entry);
            }
        }
        settings.sort();
        Ok(ProgramIdentity {
            id: info.id,
            name: c_name(&info.name),
            prog_type: info.type_,
            tag: info.tag,
            settings,
        })
    }

    /// Opens the program with this id: its descriptor (which keeps it loaded)
    /// and its identity.
    pub fn of_id(id: u32) -> io::Result<(OwnedFd, Self)> {
        // SAFETY: a plain syscall wrapper taking an integer.
        let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let identity = ProgramIdentity::of_fd(fd.as_fd())?;
        Ok((fd, identity))
    }

    /// The same code with the same settings (the ids, which differ between any
    /// two loads, aside).
    pub fn same_version(&self, other: &ProgramIdentity) -> bool {
        self.name == other.name
            && self.prog_type == other.prog_type
            && self.tag == other.tag
            && self.settings == other.settings
    }

    /// The tag as `bpftool prog` prints it (`a1b2c3d4e5f60718`).
    pub fn tag_hex(&self) -> String {
        tag_hex(&self.tag)
    }
}

pub fn tag_hex(tag: &[u8; 8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the program behind `fd` (one `BPF_OBJ_GET_INFO_BY_FD`).
pub fn prog_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(prog_info(fd, &mut [])?.id)
}

/// `bpf_prog_info` of a program; with `map_ids` non-empty, the kernel also
/// fills in up to that many ids of the maps the program uses.
fn prog_info(fd: BorrowedFd<'_>, map_ids: &mut [u32]) -> io::Result<libbpf_sys::bpf_prog_info> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    if !map_ids.is_empty() {
        info.nr_map_ids = map_ids.len() as u32;
        info.map_ids = map_ids.as_mut_ptr() as u64;
    }
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a writable bpf_prog_info of `len` bytes; `map_ids`, when
    // given, points at `nr_map_ids` writable u32s; both outlive the call.
    let rc = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(info)
}

/// The name and content of a read-only data map; `None` for any other map.
fn settings_of_map(id: u32) -> io::Result<Option<(String, Vec<u8>)>> {
    let map = MapHandle::from_map_id(id).map_err(io::Error::other)?;
    let name = map.name().to_string_lossy().into_owned();
    if !name.ends_with(SETTINGS_MAP_SUFFIX) {
        return Ok(None);
    }
    // libbpf makes it a one-entry array: key 0 holds every setting.
    let value = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(io::Error::other)?
        .unwrap_or_default();
    Ok(Some((name, value)))
}

fn c_name(name: &[std::os::raw::c_char]) -> String {
    let bytes: Vec<u8> = name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ProgramIdentity {
        ProgramIdentity {
            id: 10,
            name: "ml_short_msg".into(),
            prog_type: 16,
            tag: [1, 2, 3, 4, 5, 6, 7, 8],
            settings: vec![("shortpat.rodata".into(), vec![0, 0, 64, 0])],
        }
    }

    #[test]
    fn another_load_of_the_same_version_is_the_same_version() {
        let other = ProgramIdentity {
            id: 11,
            ..identity()
        };
        assert!(identity().same_version(&other));
    }

    #[test]
    fn a_changed_setting_is_another_version_even_with_the_same_tag() {
        let other = ProgramIdentity {
            settings: vec![("shortpat.rodata".into(), vec![0, 0, 128, 0])],
            ..identity()
        };
        assert!(!identity().same_version(&other));
    }

    #[test]
    fn another_tag_is_another_version() {
        let other = ProgramIdentity {
            tag: [9; 8],
            ..identity()
        };
        assert!(!identity().same_version(&other));
    }

    #[test]
    fn tags_print_as_bpftool_does() {
        assert_eq!(identity().tag_hex(), "0102030405060708");
    }
}

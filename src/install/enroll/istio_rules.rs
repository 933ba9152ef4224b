//! Whether Istio's own capture rules are in a pod's network namespace.
//!
//! A cluster moving from istio-cni to meshlane (README, "Moving from
//! istio-cni") still runs pods that istio-cni set up: they look like pods a
//! CNI plugin captures (`istio-validation`, no `istio-init`), but iptables
//! rules in their namespace redirect their traffic already. Enrolling them
//! would capture them twice, so the agent looks for Istio's chains — named
//! `ISTIO_*` by `istio-iptables`, whichever backend it used — and leaves such
//! a pod alone until it is restarted (and then set up by meshlane's ADD).
//!
//! Both iptables backends are read, without changing anything:
//! - nftables (iptables-nft, Debian 12's default): a netlink dump of every
//!   chain of every table in the namespace;
//! - legacy x_tables: only a table the namespace already has is read
//!   (`/proc/thread-self/net/ip{,6}_tables_names`; asking for an absent one
//!   would load it), its rule blob through `IPT_SO_GET_ENTRIES` on a raw socket.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use crate::netns::{NetnsError, NetnsGuard};

/// What every chain `istio-iptables` makes is called: ISTIO_OUTPUT,
/// ISTIO_REDIRECT, ISTIO_INBOUND, ISTIO_IN_REDIRECT, …
const ISTIO_CHAIN_PREFIX: &[u8] = b"ISTIO_";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("reading the nftables chains: {0}")]
    Nftables(Errno),
    #[error("reading the {table} table of {family}: {source}")]
    Legacy {
        family: &'static str,
        table: String,
        source: io::Error,
    },
}

/// The names of Istio's chains in the namespace at `netns`, sorted, each once.
pub fn istio_chains(netns: &Path) -> Result<Vec<String>, RulesError> {
    let _inside = NetnsGuard::enter(netns)?;
    let mut chains = nft_chain_names().map_err(RulesError::Nftables)?;
    for family in [LegacyFamily::V4, LegacyFamily::V6] {
        for table in family.tables() {
            let blob = family
                .entries(&table)
                .map_err(|source| RulesError::Legacy {
                    family: family.name(),
                    table: table.clone(),
                    source,
                })?;
            chains.extend(istio_names_in(&blob));
        }
    }
    chains.retain(|name| name.as_bytes().starts_with(ISTIO_CHAIN_PREFIX));
    chains.sort();
    chains.dedup();
    Ok(chains)
}

/// `ISTIO_*` names in a legacy table's rule blob: a user-defined chain starts
/// with an `ERROR` target whose data is the chain's name, NUL-terminated.
fn istio_names_in(blob: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while let Some(found) = find(&blob[at..], ISTIO_CHAIN_PREFIX) {
        let start = at + found;
        let end = blob[start..]
            .iter()
            .position(|b| *b == 0 || !b.is_ascii_graphic())
            .map_or(blob.len(), |n| start + n);
        names.push(String::from_utf8_lossy(&blob[start..end]).into_owned());
        at = end.max(start + 1);
    }
    names
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ------------------------------------------------------------------ nftables

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFTA_CHAIN_NAME: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

/// The dump request: a netlink header and an nfgenmsg for every family.
fn chain_dump_request(seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + NFGENMSG_LEN) as u32;
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // nfgen_family NFPROTO_UNSPEC, version NFNETLINK_V0, res_id 0.
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// One received datagram: the chain names in it, and whether the dump ended.
fn parse_chain_messages(mut data: &[u8], names: &mut Vec<String>) -> Result<bool, Errno> {
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(Errno::EBADMSG);
        }
        let (message, rest) = data.split_at(len);
        match u16_at(message, 4) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = message
                    .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    return Err(Errno::from_raw(-code));
                }
            }
            _ => {
                let mut attrs = message.get(NLMSG_HDRLEN + NFGENMSG_LEN..).unwrap_or(&[]);
                while attrs.len() >= 4 {
                    let attr_len = usize::from(u16_at(attrs, 0));
                    if attr_len < 4 || attr_len > attrs.len() {
                        break;
                    }
                    // The low bits are the type; the top two are flags.
                    if u16_at(attrs, 2) & 0x3fff == NFTA_CHAIN_NAME {
                        let value = &attrs[4..attr_len];
                        let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
                        names.push(String::from_utf8_lossy(&value[..end]).into_owned());
                    }
                    let padded = ((attr_len + 3) & !3).min(attrs.len());
                    attrs = &attrs[padded..];
                }
            }
        }
        // Messages are 4-byte aligned.
        let padding = (((len + 3) & !3) - len).min(rest.len());
        data = &rest[padding..];
    }
    Ok(false)
}

/// Every chain name of every nftables table in this thread's namespace. A
/// kernel without nf_tables has no such chain.
fn nft_chain_names() -> Result<Vec<String>, Errno> {
    let sock: OwnedFd = match socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    ) {
        Ok(sock) => sock,
        Err(Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    sendto(
        sock.as_raw_fd(),
        &chain_dump_request(1),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut names = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(Errno::EBADMSG);
        }
        match parse_chain_messages(&buf[..n], &mut names) {
            Ok(true) => return Ok(names),
            Ok(false) => {}
            // No nf_tables in this kernel: nothing can be there.
            Err(Errno::EOPNOTSUPP | Errno::EPROTONOSUPPORT) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        }
    }
}

// ------------------------------------------------------------- legacy tables

#[derive(Clone, Copy)]
enum LegacyFamily {
    V4,
    V6,
}

/// `IPT_SO_GET_INFO` / `IP6T_SO_GET_INFO` and the `ENTRIES` that follow.
const SO_GET_INFO: libc::c_int = 64;
const SO_GET_ENTRIES: libc::c_int = 65;
const TABLE_NAME_LEN: usize = 32;
/// `struct ipt_getinfo`: the name, valid_hooks, hook_entry[5], underflow[5],
/// num_entries and size (the last field).
const GETINFO_LEN: usize = TABLE_NAME_LEN + 4 + 20 + 20 + 4 + 4;
/// `struct ipt_get_entries` before its entries: the name, the size, padding to
/// the 8-byte alignment of `struct ipt_entry`.
const GET_ENTRIES_HEAD: usize = 40;

impl LegacyFamily {
    fn name(self) -> &'static str {
        match self {
            LegacyFamily::V4 => "iptables",
            LegacyFamily::V6 => "ip6tables",
        }
    }

    /// The tables this namespace has (none: the file is absent or empty).
    fn tables(self) -> Vec<String> {
        let file = match self {
            LegacyFamily::V4 => "/proc/thread-self/net/ip_tables_names",
            LegacyFamily::V6 => "/proc/thread-self/net/ip6_tables_names",
        };
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty() && name.len() < TABLE_NAME_LEN)
            .map(str::to_owned)
            .collect()
    }

    fn level_and_domain(self) -> (libc::c_int, libc::c_int) {
        match self {
            LegacyFamily::V4 => (libc::SOL_IP, libc::AF_INET),
            LegacyFamily::V6 => (libc::SOL_IPV6, libc::AF_INET6),
        }
    }

    /// The rule blob of `table`.
    fn entries(self, table: &str) -> io::Result<Vec<u8>> {
        let (level, domain) = self.level_and_domain();
        // SAFETY: socket() has no memory arguments; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                domain,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket() and is owned by nothing else.
        let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut info = [0u8; GETINFO_LEN];
        info[..table.len()].copy_from_slice(table.as_bytes());
        get(&sock, level, SO_GET_INFO, &mut info)?;
        let size = u32::from_ne_bytes(info[GETINFO_LEN - 4..].try_into().unwrap()) as usize;
        let mut entries = vec![0u8; GET_ENTRIES_HEAD + size];
        entries[..table.len()].copy_from_slice(table.as_bytes());
        entries[TABLE_NAME_LEN..TABLE_NAME_LEN + 4].copy_from_slice(&(size as u32).to_ne_bytes());
        get(&sock, level, SO_GET_ENTRIES, &mut entries)?;
        Ok(entries.split_off(GET_ENTRIES_HEAD))
    }
}

/// getsockopt into `buf`, which must come back as long as it went in.
fn get(sock: &OwnedFd, level: libc::c_int, name: libc::c_int, buf: &mut [u8]) -> io::Result<()> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for len bytes, and the kernel writes at most len.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != buf.len() {
        return Err(io::Error::other(format!(
            "the kernel answered {len} bytes, not {}",
            buf.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_a_legacy_blob() {
        let mut blob = vec![0u8; 8];
        blob.extend_from_slice(b"ERROR\0\0\0ISTIO_OUTPUT\0\0\0xxISTIO_REDIRECT\0");
        blob.extend_from_slice(b"ISTIO_");
        assert_eq!(
            istio_names_in(&blob),
            ["ISTIO_OUTPUT", "ISTIO_REDIRECT", "ISTIO_"]
        );
        assert!(istio_names_in(b"OUTPUT\0PREROUTING").is_empty());
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn chain_names_from_a_dump() {
        let chain = |table: &[u8], name: &[u8]| {
            let mut payload = vec![2, 0, 0, 0];
            payload.extend(attr(1, table));
            payload.extend(attr(NFTA_CHAIN_NAME, name));
            message((NFNL_SUBSYS_NFTABLES << 8) | 3, &payload)
        };
        let mut data = chain(b"nat\0", b"ISTIO_OUTPUT\0");
        data.extend(chain(b"nat\0", b"PREROUTING\0"));
        let mut names = Vec::new();
        assert_eq!(parse_chain_messages(&data, &mut names), Ok(false));
        assert_eq!(names, ["ISTIO_OUTPUT", "PREROUTING"]);
        let done = message(NLMSG_DONE, &[0; 4]);
        assert_eq!(parse_chain_messages(&done, &mut names), Ok(true));
        let mut error = (-libc::EPERM).to_ne_bytes().to_vec();
        error.extend_from_slice(&[0; 16]);
        assert_eq!(
            parse_chain_messages(&message(NLMSG_ERROR, &error), &mut names),
            Err(Errno::EPERM)
        );
        assert_eq!(chain_dump_request(7).len(), 20);
    }
}

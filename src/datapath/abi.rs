//! The C↔Rust contract (`bpf/meshlane.h`) as the skeleton generated it from BTF,
//! plus byte views for map keys and values.

pub use super::skel::connect::types::{
    ml_addr, ml_attachment, ml_attachment_key, ml_cidr_key, ml_conn_key, ml_counter, ml_istio_port,
    ml_limits, ml_listener_key, ml_netns_tag, ml_orig_dst, ml_pod, ml_pod_flag, ml_pod_index,
    ml_pod_port, ml_port_key, ml_port_list, ml_short_key, ml_short_offer, ml_short_role,
    ml_short_sock, ml_short_state,
};

use std::mem::size_of;
use std::net::{IpAddr, Ipv6Addr};

/// A contract struct that can be handed to and read from a BPF map as raw bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, made of integers and arrays of integers only, with
/// every padding byte spelled out as a field (the skeleton generator does this), so
/// every byte is initialized and every bit pattern is a valid value.
pub unsafe trait MapBytes: Copy + Default + Sized {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: see the trait's contract: no uninitialized padding, plain integers.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }

    /// Reads a value from map bytes; `None` when the size does not match (a map
    /// created by another meshlane version).
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != size_of::<Self>() {
            return None;
        }
        let mut value = Self::default();
        // SAFETY: sizes are equal, any bit pattern is valid (trait contract), and
        // `value` is a distinct local, so the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut value as *mut Self).cast::<u8>(),
                size_of::<Self>(),
            );
        }
        Some(value)
    }
}

// SAFETY (all below): generated from `bpf/meshlane.h`; integer fields only, padding
// explicit (checked by `contract_sizes_have_no_hidden_padding`).
// SAFETY: an integer; the netns-cookie key of ml_pods.
unsafe impl MapBytes for u64 {}
// SAFETY: an integer; the slot key of ml_netns_slots.
unsafe impl MapBytes for u32 {}
unsafe impl MapBytes for ml_pod {}
unsafe impl MapBytes for ml_addr {}
unsafe impl MapBytes for ml_port_key {}
unsafe impl MapBytes for ml_cidr_key {}
unsafe impl MapBytes for ml_conn_key {}
unsafe impl MapBytes for ml_orig_dst {}
unsafe impl MapBytes for ml_attachment_key {}
unsafe impl MapBytes for ml_attachment {}
unsafe impl MapBytes for ml_short_key {}
unsafe impl MapBytes for ml_short_offer {}
unsafe impl MapBytes for ml_listener_key {}
unsafe impl MapBytes for ml_pod_index {}

impl ml_addr {
    /// The 16-byte form the BPF side uses: IPv4 as `::ffff:a.b.c.d`.
    pub fn from_ip(ip: IpAddr) -> Self {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let octets = v6.octets();
        let mut words = [0u32; 4];
        for (word, chunk) in words.iter_mut().zip(octets.chunks_exact(4)) {
            // Network order in memory: keep the bytes as they are.
            *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        ml_addr { words }
    }

    pub fn to_ip(&self) -> IpAddr {
        let mut octets = [0u8; 16];
        for (chunk, word) in octets.chunks_exact_mut(4).zip(self.words) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let v6 = Ipv6Addr::from(octets);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// Copies `text` into a NUL-padded C char array; `None` when it does not fit
/// (one byte stays for the terminating NUL).
pub fn c_chars<const N: usize>(text: &str) -> Option<[i8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() >= N || bytes.contains(&0) {
        return None;
    }
    let mut out = [0i8; N];
    for (dst, src) in out.iter_mut().zip(bytes) {
        *dst = *src as i8;
    }
    Some(out)
}

/// The text of a NUL-padded C char array (lossy on invalid UTF-8).
pub fn c_chars_to_string(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_sizes_have_no_hidden_padding() {
        // The sizes the C compiler gives these structs (see bpf/meshlane.h).
        assert_eq!(size_of::<ml_addr>(), 16);
        assert_eq!(size_of::<ml_listener_key>(), 8 + 4 + 4);
        assert_eq!(size_of::<ml_pod>(), 4 * 3 + 2 * 4 + 16 * 8);
        assert_eq!(size_of::<ml_port_key>(), 16);
        assert_eq!(size_of::<ml_cidr_key>(), 4 + 8 + 16);
        assert_eq!(size_of::<ml_orig_dst>(), 20);
        assert_eq!(size_of::<ml_conn_key>(), 8 + 16 + 16 + 2 + 2 + 4);
        assert_eq!(size_of::<ml_attachment_key>(), 128 + 16);
        assert_eq!(size_of::<ml_attachment>(), 8 + 2 + 6 + 16 * 8 + 64 + 256);
        assert_eq!(size_of::<ml_short_key>(), 8 + 16 + 16 + 2 + 2 + 4);
        assert_eq!(size_of::<ml_short_offer>(), 8);
        assert_eq!(size_of::<ml_short_sock>(), 48 + 8 + 8 + 4 + 4);
        assert_eq!(size_of::<ml_pod_port>(), 4);
        assert_eq!(
            size_of::<ml_pod_index>(),
            2 * 3 + 2 + 16 * 8 + 4 * 128 + (128 + 16) * 8
        );
    }

    #[test]
    fn addresses_round_trip_in_the_mapped_form() {
        for text in ["10.1.2.3", "127.0.0.6", "fd00::1", "::1", "::ffff:10.0.0.1"] {
            let ip: IpAddr = text.parse().unwrap();
            let addr = ml_addr::from_ip(ip);
            let expected = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            };
            assert_eq!(addr.to_ip(), expected, "{text}");
        }
        let v4 = ml_addr::from_ip("10.1.2.3".parse().unwrap());
        assert_eq!(v4.words[2].to_ne_bytes(), [0, 0, 0xff, 0xff]);
        assert_eq!(v4.words[3].to_ne_bytes(), [10, 1, 2, 3]);
    }

    #[test]
    fn map_bytes_round_trip() {
        let mut pod = ml_pod {
            flags: 5,
            proxy_uid: 1337,
            ip_count: 1,
            ..Default::default()
        };
        pod.ips[0] = ml_addr::from_ip("10.0.0.9".parse().unwrap());
        let back = ml_pod::from_bytes(pod.as_bytes()).unwrap();
        assert_eq!(back.flags, 5);
        assert_eq!(back.proxy_uid, 1337);
        assert_eq!(back.ips[0].to_ip().to_string(), "10.0.0.9");
        assert!(ml_pod::from_bytes(&[0u8; 3]).is_none());
    }

    #[test]
    fn c_chars_refuse_what_does_not_fit() {
        assert!(c_chars::<4>("abc").is_some());
        assert!(c_chars::<4>("abcd").is_none());
        assert!(c_chars::<8>("a\0b").is_none());
        let chars = c_chars::<16>("eth0").unwrap();
        assert_eq!(c_chars_to_string(&chars), "eth0");
    }
}

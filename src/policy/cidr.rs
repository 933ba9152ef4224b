//! An IP prefix (`10.0.0.0/8`, `fd00::/64`) as Istio's annotations and meshlane's
//! settings write it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The network address (host bits cleared).
    addr: IpAddr,
    prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an IP prefix ({reason})")]
pub struct CidrError {
    pub text: String,
    pub reason: &'static str,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        let max = max_prefix(addr);
        (prefix_len <= max).then(|| Cidr {
            addr: mask(addr, prefix_len),
            prefix_len,
        })
    }

    /// A single address as a /32 or /128.
    pub fn host(addr: IpAddr) -> Self {
        Cidr {
            addr,
            prefix_len: max_prefix(addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix_len) == self.addr
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    // The first `prefix_len` bits of a `width`-bit address (none for /0).
    let keep = |width: u32| {
        u128::MAX
            .checked_shl(width - u32::from(prefix_len))
            .unwrap_or(0)
    };
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(((u128::from(u32::from(v4)) & keep(32)) as u32).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & keep(128)).into()),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a host prefix), as Istio accepts.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| CidrError {
            text: text.to_owned(),
            reason,
        };
        let (addr_text, len_text) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| err("bad address"))?;
        let prefix_len = match len_text {
            None => max_prefix(addr),
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => len
                .parse::<u8>()
                .map_err(|_| err("prefix length out of range"))?,
            Some(_) => return Err(err("bad prefix length")),
        };
        Cidr::new(addr, prefix_len).ok_or_else(|| err("prefix length out of range"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let cases = [
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("fd00::1/64", "fd00::/64"),
            ("::/0", "::/0"),
            ("2001:db8::1", "2001:db8::1/128"),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Cidr>().unwrap().to_string(), want, "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_prefix() {
        for text in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "x/8",
            "10.0.0.0/8/8",
            "*",
        ] {
            assert!(text.parse::<Cidr>().is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn contains_respects_family_and_length() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains("fd00::1".parse().unwrap()));
        assert!(!all.contains("10.0.0.1".parse().unwrap()));
    }
}

//! A CNI attachment (container ID + interface name) as meshlane remembers it: a
//! netns may carry several (Multus), and may be gone when DEL or GC comes.

use std::net::IpAddr;

use super::abi::{
    c_chars, c_chars_to_string, ml_addr, ml_attachment, ml_attachment_key, ml_limits,
};
use super::error::DatapathError;

/// The container ID meshlane gives a pod it enrolled (a pod that ran before the
/// agent) when it could not tell the pod's sandbox ID: no runtime will name it, so
/// DEL never removes it and GC keeps it while the pod's netns lives.
pub const UNKNOWN_SANDBOX_PREFIX: &str = "meshlane-netns-cookie-";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentKey {
    pub fn new(container_id: &str, ifname: &str) -> Self {
        AttachmentKey {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        }
    }

    pub fn to_abi(&self) -> Result<ml_attachment_key, DatapathError> {
        Ok(ml_attachment_key {
            container_id: c_chars(&self.container_id).ok_or_else(|| DatapathError::DoesNotFit {
                what: "container ID",
                detail: format!(
                    "{} bytes, at most {}",
                    self.container_id.len(),
                    ml_limits::ML_CONTAINER_ID_LEN.0 - 1
                ),
            })?,
            ifname: c_chars(&self.ifname).ok_or_else(|| DatapathError::DoesNotFit {
                what: "interface name",
                detail: format!("{:?}", self.ifname),
            })?,
        })
    }

    pub fn from_abi(key: &ml_attachment_key) -> Self {
        AttachmentKey {
            container_id: c_chars_to_string(&key.container_id),
            ifname: c_chars_to_string(&key.ifname),
        }
    }

    /// The key for a lookup whose input was already validated by `to_abi`.
    pub(super) fn to_abi_lossy(&self) -> ml_attachment_key {
        self.to_abi().unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub key: AttachmentKey,
    pub netns_cookie: u64,
    /// This attachment's share of the pod's IPs.
    pub ips: Vec<IpAddr>,
    pub pod_namespace: String,
    pub pod_name: String,
}

impl Attachment {
    pub fn to_abi(&self) -> Result<(ml_attachment_key, ml_attachment), DatapathError> {
        let key = self.key.to_abi()?;
        let mut value = ml_attachment {
            netns_cookie: self.netns_cookie,
            ip_count: self.ips.len() as u16,
            pod_namespace: c_chars(&self.pod_namespace).ok_or_else(|| {
                DatapathError::DoesNotFit {
                    what: "pod namespace",
                    detail: format!("{:?}", self.pod_namespace),
                }
            })?,
            pod_name: c_chars(&self.pod_name).ok_or_else(|| DatapathError::DoesNotFit {
                what: "pod name",
                detail: format!("{:?}", self.pod_name),
            })?,
            ..Default::default()
        };
        if self.ips.len() > value.ips.len() {
            return Err(DatapathError::DoesNotFit {
                what: "attachment IPs",
                detail: format!("{} addresses, at most {}", self.ips.len(), value.ips.len()),
            });
        }
        for (slot, ip) in value.ips.iter_mut().zip(&self.ips) {
            *slot = ml_addr::from_ip(*ip);
        }
        Ok((key, value))
    }

    pub fn from_abi(key: &ml_attachment_key, value: &ml_attachment) -> Self {
        let count = usize::from(value.ip_count).min(value.ips.len());
        Attachment {
            key: AttachmentKey::from_abi(key),
            netns_cookie: value.netns_cookie,
            ips: value.ips[..count].iter().map(ml_addr::to_ip).collect(),
            pod_namespace: c_chars_to_string(&value.pod_namespace),
            pod_name: c_chars_to_string(&value.pod_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_abi() {
        let attachment = Attachment {
            key: AttachmentKey::new(&"a".repeat(64), "eth0"),
            netns_cookie: 4096,
            ips: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
        };
        let (key, value) = attachment.to_abi().unwrap();
        assert_eq!(Attachment::from_abi(&key, &value), attachment);
    }

    #[test]
    fn an_overlong_container_id_does_not_fit() {
        let key = AttachmentKey::new(&"a".repeat(128), "eth0");
        assert!(matches!(
            key.to_abi(),
            Err(DatapathError::DoesNotFit {
                what: "container ID",
                ..
            })
        ));
    }
}

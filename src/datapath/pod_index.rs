//! The keys of one netns's records outside `ml_pods` (struct ml_pod_index in
//! `bpf/meshlane.h`): its attachments, its addresses in `ml_pod_ips`, its port
//! entries and which CIDR tries may hold its ranges. DEL and a repeated ADD read
//! them from the netns cookie, so their cost does not grow with the node's pod
//! count (docs/reliability.md, "Finding a pod's records").

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::abi::{ml_addr, ml_pod_index, ml_pod_port};
use super::attachment::AttachmentKey;
use super::error::DatapathError;
use super::pod_record::{CidrTrie, PodEntries, PortEntry, CIDR_TRIES};

/// What a netns holds, or may hold, outside its pod record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodKeys {
    pub attachments: BTreeSet<AttachmentKey>,
    pub ips: BTreeSet<IpAddr>,
    pub ports: BTreeSet<PortEntry>,
    pub tries: BTreeSet<CidrTrie>,
}

impl PodKeys {
    /// The keys one ADD writes: its attachment and the pod's entries.
    pub fn listing(attachment: &AttachmentKey, entries: &PodEntries) -> Self {
        PodKeys {
            attachments: BTreeSet::from([attachment.clone()]),
            ips: entries.steered_ips.iter().copied().collect(),
            ports: entries.ports.clone(),
            tries: entries.cidrs.iter().map(|(trie, _, _)| *trie).collect(),
        }
    }

    /// Both lists together: what exists while one set of records replaces another.
    pub fn union(&self, other: &PodKeys) -> Self {
        let join = |a: &BTreeSet<_>, b: &BTreeSet<_>| a.union(b).cloned().collect();
        PodKeys {
            attachments: self
                .attachments
                .union(&other.attachments)
                .cloned()
                .collect(),
            ips: join(&self.ips, &other.ips),
            ports: self.ports.union(&other.ports).copied().collect(),
            tries: self.tries.union(&other.tries).copied().collect(),
        }
    }

    pub fn to_abi(&self) -> Result<ml_pod_index, DatapathError> {
        let mut index = ml_pod_index::default();
        let too_many = |what: &'static str, count: usize, max: usize| DatapathError::DoesNotFit {
            what,
            detail: format!("{count}, at most {max} per pod"),
        };
        if self.attachments.len() > index.attachments.len() {
            return Err(too_many(
                "CNI attachments (interfaces) of one network namespace",
                self.attachments.len(),
                index.attachments.len(),
            ));
        }
        if self.ips.len() > index.ips.len() {
            return Err(too_many("pod IPs", self.ips.len(), index.ips.len()));
        }
        if self.ports.len() > index.ports.len() {
            return Err(too_many(
                "port-list entries",
                self.ports.len(),
                index.ports.len(),
            ));
        }
        for (slot, key) in index.attachments.iter_mut().zip(&self.attachments) {
            *slot = key.to_abi()?;
        }
        for (slot, ip) in index.ips.iter_mut().zip(&self.ips) {
            *slot = ml_addr::from_ip(*ip);
        }
        for (slot, entry) in index.ports.iter_mut().zip(&self.ports) {
            *slot = ml_pod_port {
                port: entry.port,
                list: entry.list as u8,
                ..Default::default()
            };
        }
        index.attachment_count = self.attachments.len() as u16;
        index.ip_count = self.ips.len() as u16;
        index.port_count = self.ports.len() as u16;
        index.tries = CIDR_TRIES
            .iter()
            .enumerate()
            .filter(|(_, trie)| self.tries.contains(trie))
            .fold(0, |bits, (n, _)| bits | 1 << n);
        Ok(index)
    }

    pub fn from_abi(index: &ml_pod_index) -> Self {
        let bounded = |count: u16, len: usize| usize::from(count).min(len);
        let attachments =
            &index.attachments[..bounded(index.attachment_count, index.attachments.len())];
        PodKeys {
            attachments: attachments.iter().map(AttachmentKey::from_abi).collect(),
            ips: index.ips[..bounded(index.ip_count, index.ips.len())]
                .iter()
                .map(ml_addr::to_ip)
                .collect(),
            ports: index.ports[..bounded(index.port_count, index.ports.len())]
                .iter()
                .map(|port| PortEntry {
                    list: u32::from(port.list),
                    port: port.port,
                })
                .collect(),
            tries: CIDR_TRIES
                .iter()
                .enumerate()
                .filter(|(n, _)| index.tries & (1 << n) != 0)
                .map(|(_, trie)| *trie)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::abi::ml_limits;
    use crate::policy::annotations::limits;
    use crate::policy::PodCapture;

    fn entries() -> PodEntries {
        let capture = PodCapture::istio_defaults(
            vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            1337,
            1337,
        );
        PodEntries::from_capture(&capture).unwrap()
    }

    #[test]
    fn round_trips_through_the_abi() {
        let mut keys = PodKeys::listing(&AttachmentKey::new("c1", "eth0"), &entries());
        keys.attachments.insert(AttachmentKey::new("c1", "net1"));
        keys.tries.insert(CidrTrie::InterfaceRoutes);
        let back = PodKeys::from_abi(&keys.to_abi().unwrap());
        assert_eq!(back, keys);
        assert_eq!(back.ports.len(), 5);
        assert_eq!(back.ips.len(), 2);
    }

    #[test]
    fn a_union_lists_both() {
        let a = PodKeys::listing(&AttachmentKey::new("c1", "eth0"), &entries());
        let mut b = PodKeys::default();
        b.attachments.insert(AttachmentKey::new("c1", "net1"));
        b.ips.insert("10.0.0.6".parse().unwrap());
        let both = a.union(&b);
        assert_eq!(both.attachments.len(), 2);
        assert_eq!(both.ips.len(), 3);
        assert_eq!(both.ports, a.ports);
    }

    #[test]
    fn a_ninth_attachment_does_not_fit() {
        let mut keys = PodKeys::default();
        for n in 0..9 {
            keys.attachments
                .insert(AttachmentKey::new("c1", &format!("net{n}")));
        }
        let err = keys.to_abi().unwrap_err();
        assert!(err.to_string().contains("attachments"), "{err}");
    }

    /// Every port a pod may list (policy::annotations::limits) fits its index.
    #[test]
    fn the_per_pod_port_cap_fits_the_index() {
        let istio_own = 8;
        assert!(
            4 * limits::PORTS_PER_ANNOTATION + istio_own <= ml_limits::ML_MAX_POD_PORTS.0 as usize
        );
        assert_eq!(
            ml_limits::ML_MAX_POD_IPS.0,
            ml_pod_index::default().ips.len() as u32
        );
    }
}

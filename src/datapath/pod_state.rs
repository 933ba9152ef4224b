//! The per-pod records in the pinned maps: the pod record (keyed by netns cookie),
//! its port and CIDR list entries, its in-flight connection records, and the CNI
//! attachments that reference it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::abi::MapBytes;
use super::abi::{
    ml_addr, ml_attachment, ml_attachment_key, ml_cidr_key, ml_conn_key, ml_pod, ml_pod_flag,
    ml_port_key,
};
use super::attachment::{Attachment, AttachmentKey};
use super::error::DatapathError;
use super::inbound_link;
use super::layout::PinLayout;
use super::names::maps;
use super::netns_tag;
use super::pinned_map::{LazyMap, PinnedMap};
use super::pod_index::PodKeys;
use super::pod_record::{
    cidr_key, cookie_of_cidr_key, port_entry_of, port_key, CidrTrie, PodEntries, PortEntry,
    CIDR_TRIES,
};

/// The rule maps hold membership only; the value is a byte.
const MEMBER: [u8; 1] = [1];

fn pod_ips(pod: &ml_pod) -> Vec<ml_addr> {
    let count = usize::from(pod.ip_count).min(pod.ips.len());
    pod.ips[..count].to_vec()
}

/// The maps are opened when first used: an ADD or DEL of a pod without ranges
/// never opens the CIDR tries or the connection map (each open is two `bpf`
/// calls, docs/benchmarks.md "Pod setup at 1,000 pods").
pub struct PodMaps {
    layout: PinLayout,
    pods: LazyMap,
    pod_ips: LazyMap,
    port_rules: LazyMap,
    exclude_cidrs: LazyMap,
    include_cidrs: LazyMap,
    interface_routes: LazyMap,
    conns: LazyMap,
    attachments: LazyMap,
    /// Absent under a pin root whose programs an older meshlane loaded: every
    /// netns is then searched for as before the index.
    index: Option<PinnedMap>,
}

impl PodMaps {
    pub fn open(layout: &PinLayout) -> Result<Self, DatapathError> {
        Ok(PodMaps {
            layout: layout.clone(),
            pods: LazyMap::new(layout, maps::PODS),
            pod_ips: LazyMap::new(layout, maps::POD_IPS),
            port_rules: LazyMap::new(layout, maps::PORT_RULES),
            exclude_cidrs: LazyMap::new(layout, maps::OUT_EXCLUDE_CIDRS),
            include_cidrs: LazyMap::new(layout, maps::OUT_INCLUDE_CIDRS),
            interface_routes: LazyMap::new(layout, maps::OUT_IFACE_ROUTES),
            conns: LazyMap::new(layout, maps::CONN_ORIG_DST),
            attachments: LazyMap::new(layout, maps::ATTACHMENTS),
            index: PinnedMap::open_if_pinned(layout, maps::POD_INDEX)?,
        })
    }

    fn trie(&self, trie: CidrTrie) -> Result<&PinnedMap, DatapathError> {
        match trie {
            CidrTrie::ExcludeOutbound => self.exclude_cidrs.open(),
            CidrTrie::IncludeOutbound => self.include_cidrs.open(),
            CidrTrie::InterfaceRoutes => self.interface_routes.open(),
        }
    }

    pub fn pod(&self, netns_cookie: u64) -> Result<Option<ml_pod>, DatapathError> {
        self.pods.open()?.get(&netns_cookie)
    }

    /// Replaces only the pod record and its address entries (the list entries
    /// stay as they are): an attachment left, taking its addresses with it.
    pub fn put_pod_record(&self, netns_cookie: u64, pod: &ml_pod) -> Result<(), DatapathError> {
        let keys = self.keys_of(netns_cookie)?;
        self.put_pod_record_with(netns_cookie, pod, &keys)
    }

    fn put_pod_record_with(
        &self,
        netns_cookie: u64,
        pod: &ml_pod,
        keys: &PodKeys,
    ) -> Result<(), DatapathError> {
        let wanted = pod_ips(pod);
        self.pods.open()?.put(&netns_cookie, pod)?;
        for old in keys.ips.iter().map(|ip| ml_addr::from_ip(*ip)) {
            if !wanted.iter().any(|ip| ip.as_bytes() == old.as_bytes()) {
                self.forget_ip_if_owned(&old, netns_cookie)?;
            }
        }
        Ok(())
    }

    /// Every pod record, by netns cookie.
    pub fn pods(&self) -> Result<Vec<(u64, ml_pod)>, DatapathError> {
        self.pods.open()?.entries()
    }

    fn port_entries(&self, netns_cookie: u64) -> Result<BTreeSet<PortEntry>, DatapathError> {
        Ok(self
            .port_rules
            .open()?
            .keys::<ml_port_key>()?
            .iter()
            .filter(|key| key.netns_cookie == netns_cookie)
            .map(port_entry_of)
            .collect())
    }

    fn cidr_keys(
        &self,
        trie: CidrTrie,
        netns_cookie: u64,
    ) -> Result<Vec<ml_cidr_key>, DatapathError> {
        Ok(self
            .trie(trie)?
            .keys::<ml_cidr_key>()?
            .into_iter()
            .filter(|key| cookie_of_cidr_key(key) == netns_cookie)
            .collect())
    }

    /// The keys of the records a netns may already hold, for an ADD: its index
    /// entry; else, when it has records that an older meshlane wrote (a pod
    /// record, or the attachment being written made for it before), the keys
    /// found by searching the node-wide maps; else none. A netns that is new to
    /// meshlane holds nothing: its cookie was never used before (the kernel does
    /// not reuse cookies).
    pub fn recorded_keys(
        &self,
        netns_cookie: u64,
        replaced: Option<&Attachment>,
    ) -> Result<Option<PodKeys>, DatapathError> {
        if let Some(keys) = self.indexed_keys(netns_cookie)? {
            return Ok(Some(keys));
        }
        if replaced.is_some_and(|old| old.netns_cookie == netns_cookie)
            || self.pod(netns_cookie)?.is_some()
        {
            return Ok(Some(self.searched_keys(netns_cookie)?));
        }
        Ok(None)
    }

    fn indexed_keys(&self, netns_cookie: u64) -> Result<Option<PodKeys>, DatapathError> {
        let Some(index) = &self.index else {
            return Ok(None);
        };
        Ok(index.get(&netns_cookie)?.map(|raw| PodKeys::from_abi(&raw)))
    }

    /// The keys of a netns's records: its index entry, else (records of an older
    /// meshlane, or none) whatever the node-wide maps hold for it.
    fn keys_of(&self, netns_cookie: u64) -> Result<PodKeys, DatapathError> {
        match self.indexed_keys(netns_cookie)? {
            Some(keys) => Ok(keys),
            None => self.searched_keys(netns_cookie),
        }
    }

    /// A netns's keys from every entry of the node-wide maps: O(pods), only for
    /// a netns without an index entry.
    fn searched_keys(&self, netns_cookie: u64) -> Result<PodKeys, DatapathError> {
        let record = self.pod(netns_cookie)?;
        Ok(PodKeys {
            attachments: self
                .attachments()?
                .into_iter()
                .filter(|a| a.netns_cookie == netns_cookie)
                .map(|a| a.key)
                .collect(),
            ips: self
                .ips_of(netns_cookie)?
                .iter()
                .map(ml_addr::to_ip)
                .collect(),
            ports: self.port_entries(netns_cookie)?,
            tries: CIDR_TRIES
                .into_iter()
                .filter(|trie| record.is_none_or(|pod| trie_in_use(&pod, *trie)))
                .collect(),
        })
    }

    /// Lists keys in the netns's index, before the records they name are written
    /// or after those they no longer name are gone.
    pub fn put_keys(&self, netns_cookie: u64, keys: &PodKeys) -> Result<(), DatapathError> {
        match &self.index {
            Some(index) => index.put(&netns_cookie, &keys.to_abi()?),
            None => {
                keys.to_abi()?;
                Ok(())
            }
        }
    }

    /// Puts back the index entry an ADD found (none: removes it).
    pub fn restore_keys(
        &self,
        netns_cookie: u64,
        keys: Option<&PodKeys>,
    ) -> Result<(), DatapathError> {
        match (keys, &self.index) {
            (Some(keys), _) => self.put_keys(netns_cookie, keys),
            (None, Some(index)) => index.delete(&netns_cookie),
            (None, None) => Ok(()),
        }
    }

    /// The netns cookies that have an index entry (for GC: an ADD that stopped
    /// right after writing it leaves one without records).
    pub fn indexed_cookies(&self) -> Result<Vec<u64>, DatapathError> {
        match &self.index {
            Some(index) => index.keys(),
            None => Ok(Vec::new()),
        }
    }

    /// Writes (or replaces) a pod's records. The list entries go in first and the
    /// pod record last, because the record is what turns capture on; if anything
    /// fails, the entries this call added are removed again. `old` is
    /// `recorded_keys`: the entries to replace (none for a new netns); the index
    /// must already list the new entries too (`put_keys`).
    pub fn write_pod(
        &self,
        netns_cookie: u64,
        entries: &PodEntries,
        old: Option<&PodKeys>,
    ) -> Result<(), DatapathError> {
        let empty = PodKeys::default();
        let old = old.unwrap_or(&empty);
        let old_ports = old.ports.clone();
        let mut old_cidrs = Vec::new();
        for trie in old.tries.iter().copied() {
            for key in self.cidr_keys(trie, netns_cookie)? {
                old_cidrs.push((trie, key));
            }
        }
        let wanted_cidrs: Vec<(CidrTrie, ml_cidr_key)> = entries
            .cidrs
            .iter()
            .map(|(trie, cidr, _)| (*trie, cidr_key(netns_cookie, &cidr.0)))
            .collect();
        let same = |a: &(CidrTrie, ml_cidr_key), b: &(CidrTrie, ml_cidr_key)| {
            a.0 == b.0 && a.1.as_bytes() == b.1.as_bytes()
        };

        let old_ips: Vec<ml_addr> = old.ips.iter().map(|ip| ml_addr::from_ip(*ip)).collect();
        let wanted_ips: Vec<ml_addr> = entries
            .steered_ips
            .iter()
            .map(|ip| ml_addr::from_ip(*ip))
            .collect();
        for ip in &wanted_ips {
            self.check_address_free(ip, netns_cookie)?;
        }
        let mut added_ports = Vec::new();
        let mut added_cidrs = Vec::new();
        let mut added_ips = Vec::new();
        let result = (|| {
            for ip in &wanted_ips {
                // A new pod may reuse the address of a pod whose netns is gone.
                self.pod_ips.open()?.put(ip, &netns_cookie)?;
                added_ips.push(*ip);
            }
            for entry in entries.ports.difference(&old_ports) {
                let key = port_key(netns_cookie, *entry);
                self.port_rules.open()?.put_raw(&key, &MEMBER)?;
                added_ports.push(key);
            }
            for (wanted, (_, _, value)) in wanted_cidrs.iter().zip(&entries.cidrs) {
                // Always written: an interface route's value may have changed.
                self.trie(wanted.0)?.put_raw(&wanted.1, &[*value])?;
                if !old_cidrs.iter().any(|old| same(old, wanted)) {
                    added_cidrs.push(*wanted);
                }
            }
            self.pods.open()?.put(&netns_cookie, &entries.pod)
        })();
        if let Err(err) = result {
            for ip in &added_ips {
                if !old_ips.iter().any(|old| old.as_bytes() == ip.as_bytes()) {
                    let _ = self.forget_ip_if_owned(ip, netns_cookie);
                }
            }
            for key in &added_ports {
                let _ = self.port_rules.open()?.delete(key);
            }
            for (trie, key) in &added_cidrs {
                let _ = self.trie(*trie)?.delete(key);
            }
            return Err(err);
        }
        // The pod record now matches the new entries: drop what is no longer listed.
        for stale in old_ports.difference(&entries.ports) {
            self.port_rules
                .open()?
                .delete(&port_key(netns_cookie, *stale))?;
        }
        for old in &old_cidrs {
            if !wanted_cidrs.iter().any(|wanted| same(old, wanted)) {
                self.trie(old.0)?.delete(&old.1)?;
            }
        }
        for old in &old_ips {
            if !wanted_ips.iter().any(|ip| ip.as_bytes() == old.as_bytes()) {
                self.forget_ip_if_owned(old, netns_cookie)?;
            }
        }
        Ok(())
    }

    /// An address steered for another netns may be taken over only once that
    /// netns is gone (its DEL may come late, or never): two live pods never share
    /// a steered address, whatever order their ADDs and DELs run in.
    fn check_address_free(&self, ip: &ml_addr, netns_cookie: u64) -> Result<(), DatapathError> {
        let Some(owner) = self.pod_ips.open()?.get::<_, u64>(ip)? else {
            return Ok(());
        };
        if owner == netns_cookie || !self.netns_live(owner)? {
            return Ok(());
        }
        let address = ip.to_ip();
        let holder = self
            .attachments()?
            .into_iter()
            .filter(|a| a.netns_cookie == owner)
            .max_by_key(|a| a.ips.contains(&address));
        Err(DatapathError::AddressInUse {
            address,
            owner: match holder {
                Some(a) => format!(
                    "pod {}/{} (container {}, interface {})",
                    a.pod_namespace, a.pod_name, a.key.container_id, a.key.ifname
                ),
                None => format!("the pod of netns cookie {owner}"),
            },
        })
    }

    /// Whether a pod's netns still exists: its inbound link tells; a pod without
    /// one (inbound not captured) counts as live while its record exists.
    fn netns_live(&self, netns_cookie: u64) -> Result<bool, DatapathError> {
        if inbound_link::is_attached(&self.layout, netns_cookie) {
            return Ok(inbound_link::netns_alive(&self.layout, netns_cookie));
        }
        Ok(self.pod(netns_cookie)?.is_some())
    }

    /// The netns an address is steered for, if any.
    pub fn address_owner(&self, ip: IpAddr) -> Result<Option<u64>, DatapathError> {
        self.pod_ips.open()?.get(&ml_addr::from_ip(ip))
    }

    /// The pod addresses currently mapped to this netns.
    fn ips_of(&self, netns_cookie: u64) -> Result<Vec<ml_addr>, DatapathError> {
        Ok(self
            .pod_ips
            .open()?
            .entries::<ml_addr, u64>()?
            .into_iter()
            .filter(|(_, cookie)| *cookie == netns_cookie)
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Removes an address's entry only while it still points at this netns: a
    /// newer pod that reuses the address keeps its own.
    fn forget_ip_if_owned(&self, ip: &ml_addr, netns_cookie: u64) -> Result<(), DatapathError> {
        if self.pod_ips.open()?.get::<_, u64>(ip)? == Some(netns_cookie) {
            self.pod_ips.open()?.delete(ip)?;
        }
        Ok(())
    }

    /// Links inbound steering to the pod's netns (after `write_pod`).
    pub fn attach_inbound(
        &self,
        netns_cookie: u64,
        netns_path: &std::path::Path,
    ) -> Result<(), DatapathError> {
        inbound_link::attach(&self.layout, netns_cookie, netns_path)
    }

    pub fn inbound_attached(&self, netns_cookie: u64) -> bool {
        inbound_link::is_attached(&self.layout, netns_cookie)
    }

    /// Removes everything of a pod: its inbound steering first (a link left
    /// without its record would let connections reach the app around the
    /// proxy), then its record (capture stops), its addresses and list entries.
    /// Its connection records are not searched for: they are keyed by netns
    /// cookie, which the kernel never reuses, and sockops deletes each when its
    /// socket closes (the map is LRU besides), so no later pod can read them.
    ///
    /// The netns's index entry names its addresses, port entries and which tries
    /// hold its ranges, so that only those are visited, and goes last; a netns
    /// without one (records of an older meshlane) is searched for.
    pub fn remove_pod(&self, netns_cookie: u64) -> Result<(), DatapathError> {
        let keys = self.keys_of(netns_cookie)?;
        self.remove_pod_with(netns_cookie, &keys)
    }

    fn remove_pod_with(&self, netns_cookie: u64, keys: &PodKeys) -> Result<(), DatapathError> {
        inbound_link::detach(&self.layout, netns_cookie)?;
        let record = self.pod(netns_cookie)?;
        self.pods.open()?.delete(&netns_cookie)?;
        let mut ips: Vec<ml_addr> = keys.ips.iter().map(|ip| ml_addr::from_ip(*ip)).collect();
        ips.extend(record.as_ref().map(pod_ips).unwrap_or_default());
        for ip in ips {
            self.forget_ip_if_owned(&ip, netns_cookie)?;
        }
        for entry in &keys.ports {
            self.port_rules
                .open()?
                .delete(&port_key(netns_cookie, *entry))?;
        }
        for trie in keys.tries.iter().copied() {
            for key in self.cidr_keys(trie, netns_cookie)? {
                self.trie(trie)?.delete(&key)?;
            }
        }
        self.restore_keys(netns_cookie, None)
    }

    /// How many entries of any kind reference this netns (0 after `remove_pod`).
    pub fn entries_of(&self, netns_cookie: u64) -> Result<usize, DatapathError> {
        let mut count = usize::from(self.pod(netns_cookie)?.is_some());
        count += usize::from(self.inbound_attached(netns_cookie));
        count += usize::from(netns_tag::slot_of(&self.layout, netns_cookie).is_some());
        count += netns_tag::slots_holding(&self.layout, netns_cookie)?;
        count += self.ips_of(netns_cookie)?.len();
        count += self.port_entries(netns_cookie)?.len();
        for trie in CIDR_TRIES {
            count += self.cidr_keys(trie, netns_cookie)?.len();
        }
        count += self
            .conns
            .open()?
            .keys::<ml_conn_key>()?
            .iter()
            .filter(|key| key.netns_cookie == netns_cookie)
            .count();
        count += self
            .attachments()?
            .iter()
            .filter(|a| a.netns_cookie == netns_cookie)
            .count();
        count += usize::from(self.indexed_keys(netns_cookie)?.is_some());
        Ok(count)
    }

    pub fn attachment(&self, key: &AttachmentKey) -> Result<Option<Attachment>, DatapathError> {
        let raw: Option<ml_attachment> = self.attachments.open()?.get(&key.to_abi()?)?;
        Ok(raw.map(|value| Attachment::from_abi(&key.to_abi_lossy(), &value)))
    }

    pub fn put_attachment(&self, attachment: &Attachment) -> Result<(), DatapathError> {
        let (key, value) = attachment.to_abi()?;
        self.attachments.open()?.put(&key, &value)
    }

    pub fn remove_attachment(&self, key: &AttachmentKey) -> Result<(), DatapathError> {
        self.attachments.open()?.delete(&key.to_abi()?)
    }

    pub fn attachments(&self) -> Result<Vec<Attachment>, DatapathError> {
        Ok(self
            .attachments
            .open()?
            .entries::<ml_attachment_key, ml_attachment>()?
            .iter()
            .map(|(key, value)| Attachment::from_abi(key, value))
            .collect())
    }

    /// The IPs a netns's pod record lists: `attachment`'s, then those of the
    /// netns's other attachments (Multus: one pod, several interfaces) that `keys`
    /// (`recorded_keys`) names; a netns without keys has no other attachments.
    pub fn netns_ips_with(
        &self,
        attachment: &Attachment,
        keys: Option<&PodKeys>,
    ) -> Result<Vec<IpAddr>, DatapathError> {
        let mut ips = attachment.ips.clone();
        let Some(keys) = keys else {
            return Ok(ips);
        };
        for sibling in self.listed_attachments(attachment.netns_cookie, keys)? {
            if sibling.key != attachment.key {
                for ip in sibling.ips {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
        }
        Ok(ips)
    }

    /// The attachments `keys` names that still belong to the netns (one may have
    /// moved to another netns since).
    fn listed_attachments(
        &self,
        netns_cookie: u64,
        keys: &PodKeys,
    ) -> Result<Vec<Attachment>, DatapathError> {
        let mut found = Vec::new();
        for key in &keys.attachments {
            if let Some(attachment) = self.attachment(key)? {
                if attachment.netns_cookie == netns_cookie {
                    found.push(attachment);
                }
            }
        }
        Ok(found)
    }

    /// After an attachment of this netns went, or before `leaving` goes:
    /// removes the pod's records if no other attachment references the netns
    /// (returns true), else rewrites its record to the IPs the remaining
    /// attachments hold. The attachments are those the netns's index entry
    /// lists (docs/reliability.md, "Finding a pod's records"). A DEL stopped
    /// between removing the records (index entry included) and `leaving` is
    /// finished by the next one, which finds no index entry and searches.
    pub fn rebuild_from_attachments(
        &self,
        netns_cookie: u64,
        leaving: Option<&AttachmentKey>,
    ) -> Result<bool, DatapathError> {
        let mut keys = self.keys_of(netns_cookie)?;
        let remaining: Vec<Attachment> = self
            .listed_attachments(netns_cookie, &keys)?
            .into_iter()
            .filter(|a| Some(&a.key) != leaving)
            .collect();
        if remaining.is_empty() {
            self.remove_pod_with(netns_cookie, &keys)?;
            return Ok(true);
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in remaining.iter().flat_map(|a| &a.ips) {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        if let Some(mut pod) = self.pod(netns_cookie)? {
            let mut slots = pod.ips;
            slots.fill(Default::default());
            for (slot, ip) in slots.iter_mut().zip(&ips) {
                *slot = ml_addr::from_ip(*ip);
            }
            pod.ips = slots;
            pod.ip_count = ips.len().min(slots.len()) as u16;
            self.put_pod_record_with(netns_cookie, &pod, &keys)?;
            keys.ips.retain(|ip| ips.contains(ip));
        }
        keys.attachments = remaining.into_iter().map(|a| a.key).collect();
        if self.index.is_some() {
            self.put_keys(netns_cookie, &keys)?;
        }
        Ok(false)
    }

    /// What CNI CHECK and enrollment need of a pod record: `None` without one.
    pub fn pod_summary(&self, netns_cookie: u64) -> Result<Option<PodSummary>, DatapathError> {
        Ok(self.pod(netns_cookie)?.map(|pod| PodSummary {
            captures_inbound: pod.flags & ml_pod_flag::ML_POD_CAPTURE_INBOUND.0 != 0,
            inbound_port: pod.inbound_port,
            ip_count: usize::from(pod.ip_count),
        }))
    }
}

/// Whether a pod record's flags allow entries in a trie: a pod without ranges
/// of a kind has none there (`PodEntries::from_capture` sets the flags).
fn trie_in_use(pod: &ml_pod, trie: CidrTrie) -> bool {
    let flag = |bit: ml_pod_flag| pod.flags & bit.0 != 0;
    match trie {
        CidrTrie::ExcludeOutbound => !flag(ml_pod_flag::ML_POD_NO_EXCLUDED_OUT_CIDRS),
        CidrTrie::IncludeOutbound => !flag(ml_pod_flag::ML_POD_NO_INCLUDED_OUT_CIDRS),
        CidrTrie::InterfaceRoutes => flag(ml_pod_flag::ML_POD_EXCLUDES_INTERFACES),
    }
}

/// A pod record, as far as callers outside the datapath need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSummary {
    pub captures_inbound: bool,
    /// The proxy's inbound listener port.
    pub inbound_port: u16,
    /// How many IPs the record lists.
    pub ip_count: usize,
}

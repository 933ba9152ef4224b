//! The per-CPU event counters of the BPF programs, summed over CPUs.

use super::abi::{ml_counter, ml_limits};
use super::error::DatapathError;
use super::layout::PinLayout;
use super::names::maps;
use super::pinned_map::PinnedMap;

/// Every counter with the name operators and metrics see. One counter a line:
/// rustfmt would break most rows in two.
#[rustfmt::skip]
pub const COUNTERS: [(ml_counter, &str); 39] = {
    use ml_counter as C;
    [
        (C::ML_CNT_OUTBOUND_REDIRECTED,       "outbound_redirected"),
        (C::ML_CNT_INBOUND_REDIRECTED,        "inbound_redirected"),
        (C::ML_CNT_BYPASS_EXCLUDED_PORT,      "bypass_excluded_port"),
        (C::ML_CNT_BYPASS_PASSTHROUGH_SOURCE, "bypass_passthrough_source"),
        (C::ML_CNT_BYPASS_APP_LOOPBACK,       "bypass_app_loopback"),
        (C::ML_CNT_BYPASS_PROXY,              "bypass_proxy"),
        (C::ML_CNT_BYPASS_LOCALHOST,          "bypass_localhost"),
        (C::ML_CNT_BYPASS_EXCLUDED_CIDR,      "bypass_excluded_cidr"),
        (C::ML_CNT_BYPASS_NOT_INCLUDED,       "bypass_not_included"),
        (C::ML_CNT_RECORD_FAILED,             "record_failed"),
        (C::ML_CNT_ORIG_DST_ANSWERED,         "orig_dst_answered"),
        (C::ML_CNT_ORIG_DST_MISSED,           "orig_dst_missed"),
        (C::ML_CNT_CONN_PUBLISHED,            "conn_published"),
        (C::ML_CNT_CONN_PUBLISH_FAILED,       "conn_publish_failed"),
        (C::ML_CNT_INBOUND_STEERED,           "inbound_steered"),
        (C::ML_CNT_INBOUND_REFUSED,           "inbound_refused_no_listener"),
        (C::ML_CNT_INBOUND_BYPASS_PORT,       "inbound_bypass_port"),
        (C::ML_CNT_LISTENER_REGISTERED,       "inbound_listener_registered"),
        (C::ML_CNT_LISTENER_SLOTS_FULL,       "inbound_listener_slots_full"),
        (C::ML_CNT_DNS_REDIRECTED,            "dns_redirected"),
        (C::ML_CNT_DNS_REPLY_RESTORED,        "dns_reply_restored"),
        (C::ML_CNT_BYPASS_PROXY_DNS,          "bypass_proxy_dns"),
        (C::ML_CNT_BYPASS_EXCLUDED_INTERFACE, "bypass_excluded_interface"),
        (C::ML_CNT_SHORT_TX_INSERTED,         "short_path_tx_sockets"),
        (C::ML_CNT_SHORT_RX_INSERTED,         "short_path_rx_sockets"),
        (C::ML_CNT_SHORT_INSERT_FAILED,       "short_path_insert_failed"),
        (C::ML_CNT_SHORT_REDIRECTED_MSGS,     "short_path_redirected_messages"),
        (C::ML_CNT_SHORT_REDIRECTED_BYTES,    "short_path_redirected_bytes"),
        (C::ML_CNT_SHORT_PEER_MISSING,        "short_path_peer_missing"),
        (C::ML_CNT_SHORT_PEER_GONE,           "short_path_peer_gone"),
        (C::ML_CNT_SHORT_FELL_BACK,           "short_path_fell_back"),
        (C::ML_CNT_SHORT_EVICTED,             "short_path_evicted"),
        (C::ML_CNT_SHORT_UNPAIRED,            "short_path_unpaired"),
        (C::ML_CNT_SHORT_BACKPRESSURE,        "short_path_backpressure"),
        (C::ML_CNT_SHORT_RESUMED,             "short_path_resumed"),
        (C::ML_CNT_INBOUND_FOREIGN_ADDR,      "inbound_foreign_address"),
        (C::ML_CNT_INBOUND_ADDR_CONFLICT,     "inbound_refused_address_conflict"),
        (C::ML_CNT_IPV6_REFUSED_OUTBOUND,     "ipv6_refused_outbound"),
        (C::ML_CNT_IPV6_REFUSED_INBOUND,      "ipv6_refused_inbound"),
    ]
};

// ml_counters has room for every counter (bpf/maps.h).
const _: () = assert!(ml_counter::ML_CNT_MAX.0 <= ml_limits::ML_COUNTER_SLOTS.0);

/// One counter's value, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterValue {
    pub counter: ml_counter,
    /// Its name in `COUNTERS`: what `meshlane status` and `/metrics` show.
    pub name: &'static str,
    pub value: u64,
}

/// Reads every counter, in the order of `COUNTERS`.
pub fn read_counters(layout: &PinLayout) -> Result<Vec<CounterValue>, DatapathError> {
    let map = PinnedMap::open(layout, maps::COUNTERS)?;
    COUNTERS
        .iter()
        .map(|(counter, name)| {
            Ok(CounterValue {
                counter: *counter,
                name,
                value: map.sum_percpu_u64(counter.0)?,
            })
        })
        .collect()
}

impl CounterValue {
    /// (name, value), as listings show it.
    pub fn named(&self) -> (&'static str, u64) {
        (self.name, self.value)
    }
}

/// A counter's value among `values`.
pub fn value_of(values: &[CounterValue], counter: ml_counter) -> Option<u64> {
    values
        .iter()
        .find(|read| read.counter == counter)
        .map(|read| read.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_a_name() {
        assert_eq!(COUNTERS.len(), ml_counter::ML_CNT_MAX.0 as usize);
        for (index, (counter, _)) in COUNTERS.iter().enumerate() {
            assert_eq!(counter.0 as usize, index);
        }
    }
}

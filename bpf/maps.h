/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps shared by every meshlane object. Each object declares the same set, pinned
 * by name under <pin root>/maps/: the first object loaded creates and pins them,
 * later objects (and the short-lived CNI processes, the agent and the CLI) reuse
 * the pins.
 */
#ifndef MESHLANE_MAPS_H
#define MESHLANE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "meshlane.h"

/* netns cookie -> pod record, written by CNI ADD. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ML_MAX_PODS);
	__type(key, __u64);
	__type(value, struct ml_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_pods SEC(".maps");

/* (netns cookie, port, list) -> membership of a port in a pod's port list. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ML_MAX_PORT_RULES);
	__type(key, struct ml_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_port_rules SEC(".maps");

/*
 * The three per-pod prefix sets share one definition: (netns cookie, prefix) ->
 * a byte, longest match wins.
 */
struct ml_cidr_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, ML_MAX_CIDR_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct ml_cidr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
};

/* Member of the pod's exclude-outbound-IP-ranges. */
struct ml_cidr_trie ml_out_exclude_cidrs SEC(".maps");

/* Member of the pod's include-outbound-IP-ranges. */
struct ml_cidr_trie ml_out_include_cidrs SEC(".maps");

/*
 * 1 when the pod routes the prefix through an interface of its
 * traffic.sidecar.istio.io/excludeInterfaces, 0 for its other routes: the longest
 * match answers like the pod's route lookup (main table) would.
 */
struct ml_cidr_trie ml_out_iface_routes SEC(".maps");

/* Connecting socket -> its original destination; freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for socket storage */
	__type(key, int);
	__type(value, struct ml_sk_redirect);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_sk_redirects SEC(".maps");

/*
 * Connection tuple (both ends in one netns) -> original destination, for the
 * proxy's getsockopt(SO_ORIGINAL_DST). Deleted when the connecting socket closes;
 * LRU so that a missed close can never fill it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ML_MAX_CONNS);
	__type(key, struct ml_conn_key);
	__type(value, struct ml_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_conn_orig_dst SEC(".maps");

/*
 * Pod IP -> netns cookie of the pod that steers it. The control plane never lets
 * a second live netns claim an address; sk_lookup checks the entry against the
 * netns it runs in (ml_netns_tag) before it trusts it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ML_MAX_PODS *ML_MAX_POD_IPS);
	__type(key, struct ml_addr);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_pod_ips SEC(".maps");

/*
 * The proxies' wildcard inbound listeners, registered by sockops when they listen.
 * The kernel drops a socket from the map when it closes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, ML_MAX_PODS * 2 * ML_MAX_LISTENER_SLOTS);
	__type(key, struct ml_listener_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_inbound_listeners SEC(".maps");

/* Netns slot -> netns cookie (0: free), written by CNI ADD (struct ml_netns_tag). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ML_MAX_PODS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_netns_slots SEC(".maps");

/*
 * The tag of the lookup in progress on this CPU. Lookups run in softirq with
 * bottom halves off, so another lookup never runs on this CPU between the tag
 * programs and the steering program of one run.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ml_netns_tag);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_netns_tag SEC(".maps");

/* CNI attachment -> its netns and IPs; only the control plane uses it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ML_MAX_ATTACHMENTS);
	__type(key, struct ml_attachment_key);
	__type(value, struct ml_attachment);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_attachments SEC(".maps");

/*
 * Netns cookie -> the keys of its pod's records (struct ml_pod_index); only the
 * control plane uses it. Not preallocated: an entry is ~1.8 KiB, and a node
 * holds one per captured pod, not ML_MAX_PODS.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ML_MAX_PODS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct ml_pod_index);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_pod_index SEC(".maps");

/* Event counters, per CPU so that counting never contends. */
_Static_assert(ML_CNT_MAX <= ML_COUNTER_SLOTS, "ml_counters has no room for every counter");
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ML_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_counters SEC(".maps");

/*
 * The short path (docs/shortpath.md): two socket sets of one definition, keyed by
 * the connection; the kernel removes a socket when it closes.
 */
struct ml_short_sockhash {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, ML_MAX_SHORT_SOCKETS);
	__type(key, struct ml_short_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
};

/*
 * Sockets whose sends are handed over: the sk_msg program is attached to this map,
 * so that every socket in it runs the program on each sendmsg.
 */
struct ml_short_sockhash ml_short_tx SEC(".maps");

/*
 * Proxy sockets that may receive handed-over messages. No program here: a socket
 * only in this map keeps the kernel's own sendmsg (no cost on its sends).
 */
struct ml_short_sockhash ml_short_rx SEC(".maps");

/* Short-path socket -> its peer's key and what sk_msg decided; freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for socket storage */
	__type(key, int);
	__type(value, struct ml_short_sock);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_short_socks SEC(".maps");

/*
 * Active end's key -> what it offered, until the passive end reads it (a few
 * microseconds later). LRU: an offer nobody takes (the peer went elsewhere) ages out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ML_MAX_SHORT_OFFERS);
	__type(key, struct ml_short_key);
	__type(value, struct ml_short_offer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ml_short_offers SEC(".maps");

/* See struct ml_contract: makes the contract's enums visible to Rust. */
const volatile struct ml_contract ml_contract_types;

static __always_inline void count_events(enum ml_counter counter, __u64 events)
{
	__u32 index = counter;
	__u64 *value = bpf_map_lookup_elem(&ml_counters, &index);

	if (value)
		*value += events;
}

static __always_inline void count_event(enum ml_counter counter)
{
	count_events(counter, 1);
}

#endif /* MESHLANE_MAPS_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The contract between meshlane's BPF programs and its Rust control plane.
 *
 * Every struct and constant that both sides use is defined here, once. Rust sees
 * them through the skeleton's generated `types` module (from BTF), never through
 * hand-written mirrors. Enums only reach BTF when something uses them, which is
 * why `struct ml_contract` exists (see the bottom of this file).
 *
 * Addresses are always 16 bytes in network order; IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d) so that a dual-stack socket talking IPv4 and a plain AF_INET
 * socket produce the same keys.
 */
#ifndef MESHLANE_H
#define MESHLANE_H

#include <linux/types.h>

enum ml_limits {
	/* Pod IPs remembered per pod: dual stack plus a few Multus interfaces. */
	ML_MAX_POD_IPS = 8,
	/* Pods per node; kubelet's default maximum is 110, large nodes run ~500. */
	ML_MAX_PODS = 4096,
	/* CNI attachments (container ID + ifname); a pod may have several. */
	ML_MAX_ATTACHMENTS = 8192,
	/* Redirected connections waiting for (or read by) the proxy's getsockopt. */
	ML_MAX_CONNS = 262144,
	/* Port-list entries (all pods, all lists). */
	ML_MAX_PORT_RULES = 65536,
	/* CIDR-list entries (all pods, all lists). */
	ML_MAX_CIDR_RULES = 65536,
	/*
	 * Inbound listeners remembered per pod and family: Envoy opens one
	 * SO_REUSEPORT listener per worker; any live one can take a connection.
	 */
	ML_MAX_LISTENER_SLOTS = 16,
	/* Container IDs are 64 hex characters in containerd and CRI-O. */
	ML_CONTAINER_ID_LEN = 128,
	ML_IFNAME_LEN = 16,
	ML_POD_NAMESPACE_LEN = 64,
	ML_POD_NAME_LEN = 256,
	/* Sockets on the short path at once (each map), and handshakes in flight. */
	ML_MAX_SHORT_SOCKETS = 262144,
	ML_MAX_SHORT_OFFERS = 16384,
	/*
	 * A pod's netns slot is written as two base-64 digits (struct ml_netns_tag):
	 * 64 * 64 = ML_MAX_PODS slots.
	 */
	ML_NETNS_TAG_DIGITS = 64,
	/*
	 * Entries of ml_counters: more than ML_CNT_MAX, so that a new counter does
	 * not change the pinned map's shape (docs/upgrade.md).
	 */
	ML_COUNTER_SLOTS = 128,
	/*
	 * Port-list entries of one pod (four lists of at most 30 annotated ports,
	 * plus Istio's own), and CNI attachments (interfaces) of one netns: the
	 * bounds of struct ml_pod_index.
	 */
	ML_MAX_POD_PORTS = 128,
	ML_MAX_NETNS_ATTACHMENTS = 8,
};

/* Ports of Istio's sidecar (docs/istio-capture.md, "Ports and identities"). */
enum ml_istio_port {
	ML_PORT_OUTBOUND = 15001,
	ML_PORT_INBOUND = 15006,
	ML_PORT_TUNNEL = 15008,
	ML_PORT_STATUS = 15020,
	ML_PORT_HEALTH = 15021,
	ML_PORT_DNS = 15053,
	ML_PORT_PROMETHEUS = 15090,
};

/* Bits of ml_pod.flags. */
enum ml_pod_flag {
	/* Outbound TCP connects of the app go to the proxy. */
	ML_POD_CAPTURE_OUTBOUND = 1 << 0,
	/* Inbound TCP connections go to the proxy's inbound listener. */
	ML_POD_CAPTURE_INBOUND = 1 << 1,
	/* include-outbound-IP-ranges is "*": every destination is captured. */
	ML_POD_INCLUDE_ALL_OUTBOUND = 1 << 2,
	/* include-inbound-ports is "*": every port but the excluded ones. */
	ML_POD_INCLUDE_ALL_INBOUND = 1 << 3,
	/* DNS (port 53) from the app goes to the proxy's DNS listener. */
	ML_POD_CAPTURE_DNS = 1 << 4,
	/* The pod's proxy sockets may take the sockmap short path (docs/shortpath.md). */
	ML_POD_SHORT_PATH = 1 << 5,
	/* Some destinations route through excluded interfaces (ml_out_iface_routes). */
	ML_POD_EXCLUDES_INTERFACES = 1 << 6,
	/*
	 * An include-outbound range is a loopback address: Istio then omits its
	 * "apps over loopback are left alone" rules (HasLoopBackIP in istio-iptables).
	 */
	ML_POD_INCLUDES_LOOPBACK = 1 << 7,
	/* The pod has IPv4 / IPv6 addresses: without them its connects cannot route. */
	ML_POD_HAS_IPV4 = 1 << 8,
	ML_POD_HAS_IPV6 = 1 << 9,
	/*
	 * With ML_POD_SHORT_PATH: the app's own sends to a proxy take it too (its
	 * sidecar over loopback, another pod's). Opt-in, docs/shortpath.md says why.
	 */
	ML_POD_SHORT_PATH_APP = 1 << 10,
	/*
	 * The pod has no entries in these outbound lists, so connect4/6 skips their
	 * lookups (it runs for every connect of a pod; with Istio's defaults two of
	 * them are empty). Said as "none" rather than "some" so that a record written
	 * by an older meshlane, without these bits, still gets every lookup.
	 */
	ML_POD_NO_EXCLUDED_OUT_PORTS = 1 << 11,
	ML_POD_NO_INCLUDED_OUT_PORTS = 1 << 12,
	ML_POD_NO_EXCLUDED_OUT_CIDRS = 1 << 13,
	ML_POD_NO_INCLUDED_OUT_CIDRS = 1 << 14,
	/*
	 * Kuma's rules where they differ from Istio's (docs/meshes.md): the proxy
	 * reaching its own pod goes to the inbound listener on every port (no tunnel
	 * port), and DNS capture takes UDP only: TCP to port 53 is left alone unless
	 * the proxy makes it, which then follows the TCP rules.
	 */
	ML_POD_KUMA_RULES = 1 << 15,
	/*
	 * Linkerd's rules where they differ from Istio's (docs/meshes.md, LO1-LO2):
	 * the proxy's connections (by UID or GID) are never sent to the inbound
	 * listener, not even to its own pod over loopback.
	 */
	ML_POD_LINKERD_RULES = 1 << 16,
};

/* What ml_pod.ips[i] is; the loopback rules need to know which are the pod's own. */
struct ml_addr {
	__u32 words[4];
};

/* One pod, keyed by its network namespace cookie (bpf_get_netns_cookie). */
struct ml_pod {
	__u32 flags;	     /* ML_POD_* */
	__u32 proxy_uid;     /* the sidecar's UID as the kernel sees it */
	__u32 proxy_gid;     /* the sidecar's GID as the kernel sees it */
	__u16 outbound_port; /* Envoy virtualOutbound */
	__u16 inbound_port;  /* Envoy virtualInbound */
	__u16 dns_port;	     /* istio-agent DNS proxy */
	__u16 ip_count;	     /* valid entries in ips */
	struct ml_addr ips[ML_MAX_POD_IPS];
};

/* Which per-pod port list an ml_port_key belongs to. */
enum ml_port_list {
	ML_PORTS_EXCLUDE_OUTBOUND = 1,
	ML_PORTS_INCLUDE_OUTBOUND = 2,
	ML_PORTS_EXCLUDE_INBOUND = 3,
	ML_PORTS_INCLUDE_INBOUND = 4,
};

/* Membership of a port in one list of one pod; the value is unused (a u8). */
struct ml_port_key {
	__u64 netns_cookie;
	__u16 port;  /* host order */
	__u8 list;   /* enum ml_port_list */
	__u8 pad[5]; /* zero: keys are compared bytewise */
};

/* Which per-pod CIDR list an LPM trie holds. */
enum ml_cidr_list {
	ML_CIDRS_EXCLUDE_OUTBOUND = 1,
	ML_CIDRS_INCLUDE_OUTBOUND = 2,
};

/*
 * LPM trie key: the netns cookie is matched in full (its 64 bits always count in
 * prefixlen), then the address prefix. An IPv4 CIDR a.b.c.d/n is stored as the
 * IPv4-mapped /96+n, so one trie serves both families.
 */
struct ml_cidr_key {
	__u32 prefixlen;
	__u32 netns_cookie[2];
	struct ml_addr addr;
};

/* Why a socket's destination differs from what its peer asked for. */
enum ml_redirect_kind {
	ML_REDIRECT_OUTBOUND = 1, /* connect: app -> proxy outbound listener (15001) */
	ML_REDIRECT_INBOUND = 2,  /* connect: proxy -> own pod address -> inbound listener */
	ML_REDIRECT_STEERED = 3,  /* accepted: steered by sk_lookup to the inbound listener */
	ML_REDIRECT_DNS = 4,	  /* connect/sendmsg: app DNS -> the agent's DNS proxy (15053) */
};

/* The destination a connect asked for before it was rewritten. */
struct ml_orig_dst {
	struct ml_addr addr;
	__u16 port; /* host order */
	__u8 kind;  /* enum ml_redirect_kind */
	__u8 pad;
};

/*
 * A redirected connection as both of its ends see it, inside one network
 * namespace. The connecting socket writes it (sockops, once its source port is
 * known); the proxy's accepted socket looks it up with peer and local swapped.
 */
struct ml_conn_key {
	__u64 netns_cookie;
	struct ml_addr src; /* connecting side */
	struct ml_addr dst; /* the proxy's listener after the rewrite */
	__u16 sport;	    /* host order */
	__u16 dport;	    /* host order */
	__u32 pad;
};

/* A slot of the proxy's inbound listeners (SOCKHASH key). */
struct ml_listener_key {
	__u64 netns_cookie;
	__u32 family; /* AF_INET or AF_INET6 of the listening socket */
	__u32 slot;   /* 0 .. ML_MAX_LISTENER_SLOTS - 1 */
};

/* Per-socket storage: a redirected connecting socket, or a steered accepted one. */
struct ml_sk_redirect {
	struct ml_orig_dst orig;
	struct ml_conn_key conn; /* valid once published */
	__u8 published;		 /* conn was written to ml_conn_orig_dst */
	__u8 accepted;		 /* the accepting end's copy of its connect's orig */
	__u8 pad[6];
};

/*
 * Which netns an sk_lookup program runs in. sk_lookup programs cannot read their
 * netns cookie (the kernel offers them no bpf_get_netns_cookie), so each pod's
 * netns gets a slot (ml_netns_slots: slot -> cookie) and, linked before the
 * steering program, two tiny programs that write the slot's digits here (one
 * program per digit value, loaded once per node: docs/reliability.md). The
 * steering program reads and clears the tag; the remote port ties it to the
 * lookup that wrote it.
 */
struct ml_netns_tag {
	__u16 hi;	   /* slot / ML_NETNS_TAG_DIGITS, plus 1; 0: not written */
	__u16 lo;	   /* slot % ML_NETNS_TAG_DIGITS, plus 1; 0: not written */
	__u32 remote_port; /* the lookup's ctx->remote_port, as read */
};

/* A CNI attachment (container ID + interface): a netns may carry several. */
struct ml_attachment_key {
	char container_id[ML_CONTAINER_ID_LEN];
	char ifname[ML_IFNAME_LEN];
};

struct ml_attachment {
	__u64 netns_cookie;
	__u16 ip_count;
	__u8 pad[6];
	struct ml_addr ips[ML_MAX_POD_IPS]; /* this attachment's share of the pod IPs */
	char pod_namespace[ML_POD_NAMESPACE_LEN];
	char pod_name[ML_POD_NAME_LEN];
};

/* One entry of a pod's port lists: struct ml_port_key without the cookie. */
struct ml_pod_port {
	__u16 port; /* host order */
	__u8 list;  /* enum ml_port_list */
	__u8 pad;
};

/*
 * Every key a netns's records have outside ml_pods, so that DEL (and a repeated
 * ADD) finds them from the netns cookie instead of searching the node-wide maps
 * (docs/reliability.md, "Finding a pod's records"). Written after the
 * attachment and before the other records it lists, removed after those and
 * before the attachment: while it exists it lists at least what exists.
 */
struct ml_pod_index {
	__u16 port_count;
	__u16 ip_count;
	__u16 attachment_count;
	__u8 tries; /* bit n: the pod may have entries in CIDR trie n */
	__u8 pad;
	struct ml_addr ips[ML_MAX_POD_IPS]; /* its ml_pod_ips keys */
	struct ml_pod_port ports[ML_MAX_POD_PORTS];
	struct ml_attachment_key attachments[ML_MAX_NETNS_ATTACHMENTS];
};

/* Per-CPU event counters (ml_counters); metrics and tests read them. */
enum ml_counter {
	ML_CNT_OUTBOUND_REDIRECTED = 0,	  /* app connect -> outbound listener */
	ML_CNT_INBOUND_REDIRECTED,	  /* proxy connect to own pod -> inbound listener */
	ML_CNT_BYPASS_EXCLUDED_PORT,	  /* O1 */
	ML_CNT_BYPASS_PASSTHROUGH_SOURCE, /* O2: bound to 127.0.0.6 / ::6 */
	ML_CNT_BYPASS_APP_LOOPBACK,	  /* O4 */
	ML_CNT_BYPASS_PROXY,		  /* O5: the proxy's upstream connects */
	ML_CNT_BYPASS_LOCALHOST,	  /* O6 */
	ML_CNT_BYPASS_EXCLUDED_CIDR,	  /* O7 */
	ML_CNT_BYPASS_NOT_INCLUDED,	  /* O10 */
	ML_CNT_RECORD_FAILED,		  /* no room to remember a destination: connect refused */
	ML_CNT_ORIG_DST_ANSWERED,	  /* SO_ORIGINAL_DST answered from a record */
	ML_CNT_ORIG_DST_MISSED,		  /* SO_ORIGINAL_DST asked in a pod, no record */
	ML_CNT_CONN_PUBLISHED,		  /* sockops wrote a conn record */
	ML_CNT_CONN_PUBLISH_FAILED,	  /* sockops could not write it */
	ML_CNT_INBOUND_STEERED,		  /* sk_lookup handed a connection to the proxy */
	ML_CNT_INBOUND_REFUSED,		  /* captured port, no proxy listener: refused */
	ML_CNT_INBOUND_BYPASS_PORT,	  /* excluded or not included inbound port */
	ML_CNT_LISTENER_REGISTERED,	  /* a proxy inbound listener was registered */
	ML_CNT_LISTENER_SLOTS_FULL,	  /* ... or found no free slot */
	ML_CNT_DNS_REDIRECTED,		  /* app DNS (TCP, UDP) -> DNS proxy */
	ML_CNT_DNS_REPLY_RESTORED,	  /* a DNS reply shows the server the app asked */
	ML_CNT_BYPASS_PROXY_DNS,	  /* the proxy's own DNS */
	ML_CNT_BYPASS_EXCLUDED_INTERFACE, /* routed through an excluded interface */
	ML_CNT_SHORT_TX_INSERTED,	  /* a socket's sends may take the short path */
	ML_CNT_SHORT_RX_INSERTED,	  /* a proxy socket may receive over the short path */
	ML_CNT_SHORT_INSERT_FAILED,	  /* a sockhash refused a socket (full?) */
	ML_CNT_SHORT_REDIRECTED_MSGS,	  /* messages handed to the peer socket directly */
	ML_CNT_SHORT_REDIRECTED_BYTES,	  /* ... and their bytes */
	ML_CNT_SHORT_PEER_MISSING,	  /* first message found no peer: TCP */
	ML_CNT_SHORT_PEER_GONE,		  /* the peer left the map: TCP from then on */
	ML_CNT_SHORT_FELL_BACK,		  /* small messages streamed: TCP is faster */
	ML_CNT_SHORT_EVICTED,		  /* a socket that went back to TCP left the map */
	ML_CNT_SHORT_UNPAIRED,		  /* the passive end declined an offer */
	ML_CNT_SHORT_BACKPRESSURE,	  /* the reader is behind: TCP (and its window) */
	ML_CNT_SHORT_RESUMED,		  /* ... until it caught up: short path again */
	ML_CNT_INBOUND_FOREIGN_ADDR,	  /* another netns's pod address, arriving here */
	ML_CNT_INBOUND_ADDR_CONFLICT,	  /* this pod's address mapped to another netns */
	ML_CNT_IPV6_REFUSED_OUTBOUND,	  /* IPv6 connect in a pod without IPv6 */
	ML_CNT_IPV6_REFUSED_INBOUND,	  /* IPv6 connection into a pod without IPv6 */
	ML_CNT_MAX,
};

/*
 * The short path: both ends of a TCP connection on this node, the sender's
 * messages handed to the receiving socket by sk_msg (bpf_msg_redirect_hash),
 * skipping TCP/IP. docs/shortpath.md has the classes, the policy and the
 * measurements behind it.
 */

/* A socket on the short path, from its own point of view (ml_short_tx / _rx key). */
struct ml_short_key {
	/*
	 * The socket's network namespace: the same 127.0.0.1:p -> 127.0.0.1:15001
	 * tuple exists in many pods at once. Between pods the addresses alone are
	 * unique on the node; the cookie (from ml_pod_ips) keeps one key format.
	 */
	__u64 netns_cookie;
	struct ml_addr local;
	struct ml_addr remote;
	__u16 local_port;  /* host order */
	__u16 remote_port; /* host order */
	__u32 pad;	   /* zero: keys are compared bytewise */
};

/* Bits of ml_short_offer.roles and ml_short_sock.roles. */
enum ml_short_role {
	/* In ml_short_tx: its sends are handed to the peer (it needs a receiving peer). */
	ML_SHORT_TX = 1 << 0,
	/* In ml_short_rx: a proxy socket that may receive handed-over messages. */
	ML_SHORT_RX = 1 << 1,
};

/* Where the two ends are; the fallback's thresholds differ (docs/shortpath.md). */
enum ml_short_class {
	ML_SHORT_LOOPBACK = 1,	 /* app and proxy of one pod */
	ML_SHORT_POD_TO_POD = 2, /* two pods of this node */
};

/* What sk_msg does with a socket's sends. */
enum ml_short_state {
	ML_SHORT_UNDECIDED = 0,	  /* nothing sent yet: the first message decides */
	ML_SHORT_REDIRECTING = 1, /* every message goes to the peer's socket */
	ML_SHORT_PASSING = 2,	  /* over TCP; back only once TCP is drained */
};

/*
 * Written by the active end at ESTABLISHED under its own key, read (and deleted)
 * by the passive end a moment later: what the active end did, so that the passive
 * end pairs with it or releases it.
 */
struct ml_short_offer {
	__u32 roles; /* enum ml_short_role of the active end */
	__u32 pad;
};

/* Per-socket storage of a short-path socket (ml_short_socks). */
struct ml_short_sock {
	struct ml_short_key peer; /* the receiving end's key in ml_short_rx */
	/*
	 * The receiving socket's kernel address, learnt from the first handed-over
	 * message, for reading its backlog (bpf_probe_read_kernel; the socket stays
	 * allocated while it is in ml_short_rx, and a peer that left fails the
	 * redirect whatever was read). 0 until then.
	 */
	__u64 peer_sk;
	__u64 last_small_ns; /* when it last sent a small message */
	__u32 last_rcv_nxt;  /* its rcv_nxt then: has the peer answered since? */
	__u8 small_run;	     /* small messages in a row, unanswered, close together */
	__u8 state;	     /* enum ml_short_state */
	__u8 roles;	     /* enum ml_short_role */
	__u8 class;	     /* enum ml_short_class */
};

/*
 * Not a real variable: it makes every enum of the contract part of the object's
 * BTF, so that the Rust side gets them from the skeleton instead of copying values.
 */
struct ml_contract {
	enum ml_limits limits;
	enum ml_istio_port istio_port;
	enum ml_pod_flag pod_flag;
	enum ml_port_list port_list;
	enum ml_cidr_list cidr_list;
	enum ml_redirect_kind redirect_kind;
	enum ml_counter counter;
	enum ml_short_role short_role;
	enum ml_short_class short_class;
	enum ml_short_state short_state;
};

#endif /* MESHLANE_H */

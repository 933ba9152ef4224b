// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockops, four jobs:
 * - hands the original destination of a redirected connect over to the proxy:
 *   connect4/6 can only store it on the connecting socket (its source port is not
 *   chosen yet); right before the SYN leaves the tuple is known, and the record is
 *   published under it for the proxy's accepted socket to find, until close;
 * - registers the proxy's wildcard inbound listeners for sk_lookup to use;
 * - marks accepted sockets that sk_lookup steered, so that getsockopt can answer
 *   SO_ORIGINAL_DST for them (their own local address);
 * - puts both ends of connections between local sockets on the short path
 *   (shortpath.h), and takes senders that went back to TCP off it; their
 *   retransmission wait is set from the connect on.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "addr.h"
#include "ctx_access.h"
#include "inbound.h"
#include "maps.h"
#include "meshlane.h"
#include "shortpath.h"

/* sockops programs return 1; the value only matters for a few callbacks. */
#define ML_SOCKOPS_OK 1
#define ML_TCP_CLOSE  7 /* enum in include/net/tcp_states.h, not UAPI */

static __always_inline struct ml_addr local_addr(struct bpf_sock_ops *skops)
{
	return READ_FIELD_ADDR(skops, struct bpf_sock_ops, local_ip4, local_ip6);
}

static __always_inline struct ml_addr remote_addr(struct bpf_sock_ops *skops)
{
	return READ_FIELD_ADDR(skops, struct bpf_sock_ops, remote_ip4, remote_ip6);
}

static __always_inline void conn_key_of_connecting(struct bpf_sock_ops *skops,
						   struct ml_conn_key *key)
{
	key->netns_cookie = bpf_get_netns_cookie(skops);
	key->src = local_addr(skops);
	key->dst = remote_addr(skops);
	key->sport = (__u16)skops->local_port;
	/* remote_port is a 32-bit network-order value: ntohl yields the port. */
	key->dport = (__u16)bpf_ntohl(skops->remote_port);
}

/* TCP_CONNECT_CB: the source port is chosen, the SYN is not sent yet. */
static __always_inline void publish_orig_dst(struct bpf_sock_ops *skops)
{
	struct ml_sk_redirect *redirect;
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return;
	redirect = bpf_sk_storage_get(&ml_sk_redirects, sk, 0, 0);
	if (!redirect)
		return; /* not a connect meshlane redirected */
	conn_key_of_connecting(skops, &redirect->conn);
	if (bpf_map_update_elem(&ml_conn_orig_dst, &redirect->conn, &redirect->orig, BPF_ANY)) {
		count_event(ML_CNT_CONN_PUBLISH_FAILED);
		return;
	}
	redirect->published = 1;
	count_event(ML_CNT_CONN_PUBLISHED);
	/* Ask for state changes so that the record is removed at close. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* STATE_CB: only sockets that published a record asked for it. */
static __always_inline void forget_on_close(struct bpf_sock_ops *skops)
{
	struct ml_sk_redirect *redirect;
	struct bpf_sock *sk = skops->sk;

	if (skops->args[1] != ML_TCP_CLOSE || !sk)
		return;
	redirect = bpf_sk_storage_get(&ml_sk_redirects, sk, 0, 0);
	if (!redirect || !redirect->published)
		return;
	bpf_map_delete_elem(&ml_conn_orig_dst, &redirect->conn);
	redirect->published = 0;
}

/*
 * The accepting end of a redirected connect (the proxy's socket) takes the
 * original destination with it at the end of the handshake. The connecting
 * socket's record goes when that socket closes, and a client that sends and
 * closes at once gets there before a busy proxy accepts: an orphaned socket
 * turns into a timewait socket as soon as its FIN is ACKed, with the data still
 * unread at the proxy. Returns whether it did.
 */
static __always_inline int adopt_orig_dst(struct bpf_sock_ops *skops)
{
	struct ml_sk_redirect *adopted;
	struct bpf_sock *sk = skops->sk;
	struct ml_conn_key key = {};
	struct ml_orig_dst *orig;

	if (!sk)
		return 0;
	key.netns_cookie = bpf_get_netns_cookie(skops);
	/* Sockets outside mesh pods (every accept of the node) stop at one lookup. */
	if (!bpf_map_lookup_elem(&ml_pods, &key.netns_cookie))
		return 0;
	key.src = remote_addr(skops);
	key.dst = local_addr(skops);
	key.sport = (__u16)bpf_ntohl(skops->remote_port);
	key.dport = (__u16)skops->local_port;
	orig = bpf_map_lookup_elem(&ml_conn_orig_dst, &key);
	if (!orig)
		return 0;
	adopted = bpf_sk_storage_get(&ml_sk_redirects, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!adopted)
		return 0; /* getsockopt still finds the published record */
	__builtin_memset(adopted, 0, sizeof(*adopted));
	adopted->orig = *orig;
	adopted->accepted = 1;
	return 1;
}

/*
 * TCP_LISTEN_CB: a wildcard listener on the pod's inbound port is the proxy's
 * virtualInbound. Listeners on a specific address (Istio's own start-up check
 * listens on 127.0.0.1:15006) are not registered.
 */
static __always_inline void register_inbound_listener(struct bpf_sock_ops *skops)
{
	struct ml_listener_key key = {};
	struct ml_addr local;
	struct ml_pod *pod;

	key.netns_cookie = bpf_get_netns_cookie(skops);
	pod = bpf_map_lookup_elem(&ml_pods, &key.netns_cookie);
	if (!pod || !(pod->flags & ML_POD_CAPTURE_INBOUND))
		return;
	if (skops->local_port != pod->inbound_port)
		return;
	local = local_addr(skops);
	if (!addr_is_unspecified(&local))
		return;
	key.family = skops->family;
	/* Bounded for the verifier: the first free slot takes it. */
	for (__u32 slot = 0; slot < ML_MAX_LISTENER_SLOTS; slot++) {
		key.slot = slot;
		if (!bpf_sock_hash_update(skops, &ml_inbound_listeners, &key, BPF_NOEXIST)) {
			count_event(ML_CNT_LISTENER_REGISTERED);
			return;
		}
	}
	count_event(ML_CNT_LISTENER_SLOTS_FULL);
}

/* PASSIVE_ESTABLISHED_CB: remember the destination of a steered connection. */
static __always_inline void mark_if_steered(struct bpf_sock_ops *skops)
{
	struct ml_sk_redirect *steered;
	struct bpf_sock *sk = skops->sk;
	struct ml_addr remote;
	struct ml_pod *pod;
	__u64 netns_cookie;
	__u16 local_port;

	if (!sk)
		return;
	netns_cookie = bpf_get_netns_cookie(skops);
	pod = bpf_map_lookup_elem(&ml_pods, &netns_cookie);
	if (!pod)
		return;
	local_port = (__u16)skops->local_port;
	remote = remote_addr(skops);
	if (decide_inbound(pod, netns_cookie, local_port, &remote) != ML_IN_TO_PROXY)
		return;
	steered = bpf_sk_storage_get(&ml_sk_redirects, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!steered)
		return;
	__builtin_memset(steered, 0, sizeof(*steered));
	steered->orig.addr = local_addr(skops);
	steered->orig.port = local_port;
	steered->orig.kind = ML_REDIRECT_STEERED;
}

/* The established socket's own view of its connection; false outside mesh pods. */
static __always_inline int describe_end(struct bpf_sock_ops *skops, struct short_end *end)
{
	end->netns_cookie = bpf_get_netns_cookie(skops);
	end->pod = bpf_map_lookup_elem(&ml_pods, &end->netns_cookie);
	if (!end->pod)
		return 0;
	end->local = local_addr(skops);
	end->remote = remote_addr(skops);
	end->local_port = (__u16)skops->local_port;
	end->remote_port = (__u16)bpf_ntohl(skops->remote_port);
	return 1;
}

/*
 * TCP_CONNECT_CB: a connect to a pod of this node on the short path gets the short
 * path's retransmission wait before its handshake, whose round trip sets the first
 * timeout (set at ESTABLISHED, it takes effect only as acknowledged segments
 * refine the estimate).
 */
static __always_inline void short_path_connecting(struct bpf_sock_ops *skops)
{
	const struct ml_pod *peer_pod = NULL;
	struct short_end end = {};

	if (!describe_end(skops, &end) || !(end.pod->flags & ML_POD_SHORT_PATH))
		return;
	if (peer_netns_of(&end, &peer_pod))
		shorten_retransmission_wait(skops);
}

/* ACTIVE/PASSIVE_ESTABLISHED_CB and RTT_CB of the short path. */
static __always_inline void short_path(struct bpf_sock_ops *skops, __u32 op)
{
	struct short_end end = {};

	if (!describe_end(skops, &end))
		return;
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		short_path_active(skops, &end);
	else if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		short_path_passive(skops, &end);
	else
		short_path_on_ack(skops, &end);
}

SEC("sockops")
int ml_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;

	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		publish_orig_dst(skops);
		short_path_connecting(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		register_inbound_listener(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_RTT_CB:
		short_path(skops, op);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (!adopt_orig_dst(skops))
			mark_if_steered(skops);
		short_path(skops, op);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		forget_on_close(skops);
		break;
	default:
		break;
	}
	return ML_SOCKOPS_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

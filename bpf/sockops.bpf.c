// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockops: hands the original destination of a redirected connect over to the
 * proxy. connect4/6 can only store it on the connecting socket (its source port
 * is not chosen yet); here, right before the SYN leaves, the connection's tuple
 * is known, and the record is published under it for the proxy's accepted socket
 * to find. The record goes away when the connecting socket closes.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "addr.h"
#include "ctx_access.h"
#include "maps.h"
#include "meshlane.h"

/* sockops programs return 1; the value only matters for a few callbacks. */
#define ML_SOCKOPS_OK 1
#define ML_TCP_CLOSE  7 /* enum in include/net/tcp_states.h, not UAPI */

static __always_inline void conn_key_of_connecting(struct bpf_sock_ops *skops,
						   struct ml_conn_key *key)
{
	__u32 words[4];

	key->netns_cookie = bpf_get_netns_cookie(skops);
	if (skops->family == ML_AF_INET) {
		key->src = addr_from_ipv4(READ_FIELD_U32(skops, struct bpf_sock_ops, local_ip4));
		key->dst = addr_from_ipv4(READ_FIELD_U32(skops, struct bpf_sock_ops, remote_ip4));
	} else {
		words[0] = READ_FIELD_U32(skops, struct bpf_sock_ops, local_ip6[0]);
		words[1] = READ_FIELD_U32(skops, struct bpf_sock_ops, local_ip6[1]);
		words[2] = READ_FIELD_U32(skops, struct bpf_sock_ops, local_ip6[2]);
		words[3] = READ_FIELD_U32(skops, struct bpf_sock_ops, local_ip6[3]);
		key->src = addr_from_ipv6(words);
		words[0] = READ_FIELD_U32(skops, struct bpf_sock_ops, remote_ip6[0]);
		words[1] = READ_FIELD_U32(skops, struct bpf_sock_ops, remote_ip6[1]);
		words[2] = READ_FIELD_U32(skops, struct bpf_sock_ops, remote_ip6[2]);
		words[3] = READ_FIELD_U32(skops, struct bpf_sock_ops, remote_ip6[3]);
		key->dst = addr_from_ipv6(words);
	}
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

SEC("sockops")
int ml_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		publish_orig_dst(skops);
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

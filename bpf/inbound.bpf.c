// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_lookup: inbound capture. Linked to each captured pod's network namespace; for
 * a TCP connection to a pod address on a captured port it picks the proxy's
 * inbound listener instead of the app's socket. Nothing is rewritten: the
 * accepted socket keeps the address the caller asked for, which is what Envoy
 * reads back as SO_ORIGINAL_DST. Callers on this node and on others look the same.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "addr.h"
#include "ctx_access.h"
#include "inbound.h"
#include "maps.h"
#include "meshlane.h"

static __always_inline struct ml_addr lookup_local(struct bpf_sk_lookup *ctx)
{
	__u32 words[4];

	if (ctx->family == ML_AF_INET)
		return addr_from_ipv4(READ_FIELD_U32(ctx, struct bpf_sk_lookup, local_ip4));
	READ_FIELD_IP6(ctx, struct bpf_sk_lookup, local_ip6, words);
	return addr_from_ipv6(words);
}

static __always_inline struct ml_addr lookup_remote(struct bpf_sk_lookup *ctx)
{
	__u32 words[4];

	if (ctx->family == ML_AF_INET)
		return addr_from_ipv4(READ_FIELD_U32(ctx, struct bpf_sk_lookup, remote_ip4));
	READ_FIELD_IP6(ctx, struct bpf_sk_lookup, remote_ip6, words);
	return addr_from_ipv6(words);
}

/* Hands the connection to one live listener of this family's slots. */
static __always_inline int assign_from_slots(struct bpf_sk_lookup *ctx, __u64 netns_cookie,
					     __u32 family)
{
	struct ml_listener_key key = { .netns_cookie = netns_cookie, .family = family };
	struct bpf_sock *listener;
	long err;

	/* Bounded for the verifier. */
	for (__u32 slot = 0; slot < ML_MAX_LISTENER_SLOTS; slot++) {
		key.slot = slot;
		listener = bpf_map_lookup_elem(&ml_inbound_listeners, &key);
		if (!listener)
			continue;
		/*
		 * The kernel then picks among the listener's SO_REUSEPORT group (one
		 * socket per Envoy worker). It refuses an IPv6-only listener for
		 * IPv4: the next slot may hold a better one.
		 */
		err = bpf_sk_assign(ctx, listener, 0);
		bpf_sk_release(listener);
		if (!err)
			return 1;
	}
	return 0;
}

SEC("sk_lookup")
int ml_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct ml_addr local, remote;
	struct ml_pod *pod;
	__u64 *cookie;
	__u64 netns_cookie;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	local = lookup_local(ctx);
	cookie = bpf_map_lookup_elem(&ml_pod_ips, &local);
	if (!cookie)
		return SK_PASS; /* not a pod address (127.0.0.1, a link-local, ...) */
	netns_cookie = *cookie;
	pod = bpf_map_lookup_elem(&ml_pods, &netns_cookie);
	if (!pod)
		return SK_PASS;
	remote = lookup_remote(ctx);
	switch (decide_inbound(pod, netns_cookie, (__u16)ctx->local_port, &remote)) {
	case ML_IN_TO_PROXY:
		break;
	case ML_IN_PORT_BYPASS:
		count_event(ML_CNT_INBOUND_BYPASS_PORT);
		return SK_PASS;
	default:
		return SK_PASS;
	}
	if (assign_from_slots(ctx, netns_cookie, ctx->family) ||
	    (ctx->family == ML_AF_INET && assign_from_slots(ctx, netns_cookie, ML_AF_INET6))) {
		count_event(ML_CNT_INBOUND_STEERED);
		return SK_PASS;
	}
	/*
	 * Fail closed: while the proxy is not listening (pod start, proxy restart)
	 * the caller is refused; it never reaches the app around the sidecar.
	 */
	count_event(ML_CNT_INBOUND_REFUSED);
	return SK_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_lookup: inbound capture. Linked to each captured pod's network namespace; for
 * a TCP connection to a pod address on a captured port it picks the proxy's
 * inbound listener instead of the app's socket. Nothing is rewritten: the
 * accepted socket keeps the address the caller asked for, which is what Envoy
 * reads back as SO_ORIGINAL_DST. Callers on this node and on others look the same.
 *
 * The kernel does not check that a socket handed over is in the netns of the
 * lookup, so the program first learns which pod's netns it runs in (struct
 * ml_netns_tag) and only ever hands a connection to that pod's proxy.
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
	return READ_FIELD_ADDR(ctx, struct bpf_sk_lookup, local_ip4, local_ip6);
}

static __always_inline struct ml_addr lookup_remote(struct bpf_sk_lookup *ctx)
{
	return READ_FIELD_ADDR(ctx, struct bpf_sk_lookup, remote_ip4, remote_ip6);
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

/* A tagged netns whose slot names no netns (being set up or torn down). */
#define ML_NETNS_UNKNOWN ((__u64)-1)

/*
 * The cookie of the netns this lookup runs in, from the tag its tag programs just
 * wrote; 0 when there is none (a pod linked by a meshlane without tags). The tag
 * is cleared, so that it can never be read by a later lookup.
 */
static __always_inline __u64 own_netns(struct bpf_sk_lookup *ctx)
{
	struct ml_netns_tag *tag;
	__u32 zero = 0, slot;
	__u64 *cookie;
	__u16 hi, lo;

	tag = bpf_map_lookup_elem(&ml_netns_tag, &zero);
	if (!tag)
		return 0;
	hi = tag->hi;
	lo = tag->lo;
	tag->hi = 0;
	tag->lo = 0;
	if (!hi || !lo || hi > ML_NETNS_TAG_DIGITS || lo > ML_NETNS_TAG_DIGITS ||
	    tag->remote_port != ctx->remote_port)
		return 0;
	slot = (__u32)(hi - 1) * ML_NETNS_TAG_DIGITS + (lo - 1);
	cookie = bpf_map_lookup_elem(&ml_netns_slots, &slot);
	return cookie && *cookie ? *cookie : ML_NETNS_UNKNOWN;
}

/*
 * IPv6 into a pod that has no IPv6 address (its link-local or a later SLAAC
 * address): Istio writes no ip6tables rules for such a pod, meshlane refuses it
 * (docs/istio-capture.md, I4). Connections made inside the pod stay alone.
 */
static __always_inline int ipv6_without_ipv6(struct bpf_sk_lookup *ctx, const struct ml_pod *pod,
					     const struct ml_addr *local,
					     const struct ml_addr *remote)
{
	return ctx->family == ML_AF_INET6 && (pod->flags & ML_POD_CAPTURE_INBOUND) &&
	       !(pod->flags & ML_POD_HAS_IPV6) && !addr_is_ipv4(local) &&
	       !addr_is_loopback_range(local) && !addr_is_loopback_range(remote) &&
	       !addr_equal(local, remote);
}

/*
 * The pod whose proxy may take this connection, or NULL to leave the lookup
 * alone. Sets *verdict to SK_DROP (and returns NULL) for a connection that must
 * be refused.
 */
static __always_inline struct ml_pod *steering_pod(struct bpf_sk_lookup *ctx,
						   const struct ml_addr *local,
						   const struct ml_addr *remote,
						   __u64 *netns_cookie, int *verdict)
{
	__u64 own = own_netns(ctx);
	struct ml_pod *pod;
	__u64 *owner;

	owner = bpf_map_lookup_elem(&ml_pod_ips, local);
	if (!own) {
		/* No tag: the address map alone, as before tags existed. */
		if (!owner)
			return NULL;
		*netns_cookie = *owner;
		return bpf_map_lookup_elem(&ml_pods, netns_cookie);
	}
	if (own == ML_NETNS_UNKNOWN)
		return NULL;
	*netns_cookie = own;
	pod = bpf_map_lookup_elem(&ml_pods, &own);
	if (!pod)
		return NULL;
	if (ipv6_without_ipv6(ctx, pod, local, remote)) {
		count_event(ML_CNT_IPV6_REFUSED_INBOUND);
		*verdict = SK_DROP;
		return NULL;
	}
	if (!owner)
		return NULL; /* not a steered address (127.0.0.1, an excluded interface's) */
	if (*owner == own)
		return pod;
	if (addr_is_pod_ip(pod, local)) {
		/*
		 * The pod's own address, mapped to another netns: a stale or
		 * conflicting entry. Neither the other pod's proxy nor the app.
		 */
		count_event(ML_CNT_INBOUND_ADDR_CONFLICT);
		*verdict = SK_DROP;
		return NULL;
	}
	/* Another pod's address that this netns has too (overlapping networks). */
	count_event(ML_CNT_INBOUND_FOREIGN_ADDR);
	return NULL;
}

SEC("sk_lookup")
int ml_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct ml_addr local, remote;
	int verdict = SK_PASS;
	struct ml_pod *pod;
	__u64 netns_cookie = 0;

	if (ctx->protocol != IPPROTO_TCP) {
		own_netns(ctx); /* clears the tag */
		return SK_PASS;
	}
	local = lookup_local(ctx);
	remote = lookup_remote(ctx);
	pod = steering_pod(ctx, &local, &remote, &netns_cookie, &verdict);
	if (!pod)
		return verdict;
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

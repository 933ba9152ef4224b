/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The outbound decision of docs/istio-capture.md (cases O0–O10, and D1–D3
 * for DNS) for one TCP connect, connected UDP socket or UDP datagram made inside a
 * pod, in the order Istio's nat OUTPUT chain applies its rules (the differential
 * test against kernel iptables, tests/parity_iptables.rs, is the arbiter). Shared
 * by connect4/6 and sendmsg4/6: all hand in 16-byte addresses, IPv4 mapped.
 */
#ifndef MESHLANE_OUTBOUND_H
#define MESHLANE_OUTBOUND_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "addr.h"
#include "maps.h"
#include "meshlane.h"
#include "pod.h"

#define ML_DNS_PORT 53

/* Where a connect (or datagram) ends up. */
enum ml_outbound_verdict {
	ML_OUT_UNTOUCHED = 0,
	ML_OUT_TO_OUTBOUND = 1, /* the proxy's outbound listener (15001) */
	ML_OUT_TO_INBOUND = 2,	/* the proxy's inbound listener (15006) */
	ML_OUT_TO_DNS = 3,	/* the agent's DNS proxy (15053) */
	ML_OUT_REFUSED = 4,	/* refused: the connect fails with EPERM */
};

/* One connect (or datagram) as the decision sees it. */
struct ml_connect {
	__u64 netns_cookie;
	struct ml_addr dst;
	struct ml_addr bound_src; /* unspecified unless bound before connect */
	__u16 dport;		  /* host order */
	__u8 udp;		  /* a UDP socket (else TCP) */
	__u32 uid;
	__u32 gid;
};

/* Addresses the pod routes over its loopback interface ("-o lo" in Istio's rules). */
static __always_inline int routed_over_loopback(const struct ml_pod *pod, const struct ml_addr *dst)
{
	return addr_is_loopback_range(dst) || addr_is_unspecified(dst) || addr_is_pod_ip(pod, dst);
}

/* O0: Istio inserts "-o <iface> -j RETURN" at the top of OUTPUT. */
static __always_inline int routed_through_excluded_interface(const struct ml_pod *pod,
							     const struct ml_connect *c)
{
	__u8 *excluded;

	if (!(pod->flags & ML_POD_EXCLUDES_INTERFACES))
		return 0;
	excluded = cidr_match(&ml_out_iface_routes, c->netns_cookie, &c->dst);
	return excluded && *excluded;
}

/*
 * Connects the kernel refuses before netfilter ever sees them: a family the pod has
 * no address (hence no route) for, or a loopback-scoped source (127.0.0.0/8, ::1)
 * towards a destination outside the pod. Left alone, they fail as they would under
 * iptables. (::6 is an ordinary address of lo: routing accepts it as a source.)
 */
static __always_inline int unroutable(const struct ml_pod *pod, const struct ml_connect *c,
				      int over_loopback)
{
	const struct ml_addr *src = &c->bound_src;

	if (over_loopback)
		return 0;
	if (addr_is_ipv4(&c->dst) ? !(pod->flags & ML_POD_HAS_IPV4)
				  : !(pod->flags & ML_POD_HAS_IPV6))
		return 1;
	return addr_is_ipv4(src) ? (bpf_ntohl(addr_ipv4(src)) >> 24) == 127
				 : addr_is_localhost(src);
}

/*
 * O11: an app's IPv6 TCP connect in a pod that has no IPv6 address would leave
 * around the sidecar (the link-local of eth0 and later SLAAC addresses route):
 * Istio writes no ip6tables rules for such a pod, meshlane refuses the connect
 * (docs/istio-capture.md). Loopback (::1, ::6, the pod itself) and the proxy's
 * own connects follow the usual rules.
 */
static __always_inline int ipv6_without_ipv6(const struct ml_pod *pod, const struct ml_connect *c,
					     int over_loopback)
{
	return !c->udp && !over_loopback && !addr_is_ipv4(&c->dst) &&
	       !(pod->flags & ML_POD_HAS_IPV6) && c->uid != pod->proxy_uid &&
	       c->gid != pod->proxy_gid;
}

/*
 * The source the kernel will use: the bound one, or for an unbound IPv6 connect to
 * ::6 that address itself (IPv6 source selection prefers the destination when it is
 * local; an IPv4 connect to 127.0.0.6 gets 127.0.0.1 instead).
 */
static __always_inline struct ml_addr effective_source(const struct ml_connect *c)
{
	if (addr_is_unspecified(&c->bound_src) && !addr_is_ipv4(&c->dst) &&
	    addr_is_passthrough_source(&c->dst))
		return c->dst;
	return c->bound_src;
}

/*
 * DNS, when captured: TCP and UDP to port 53, wherever they go (loopback included:
 * Istio's loopback rules leave port 53 out), except the proxy's own queries. Istio's
 * GID rule towards the inbound listener has no port 53 exception, so a GID-only
 * process reaching its own pod over TCP still goes there.
 */
static __always_inline enum ml_outbound_verdict decide_dns(const struct ml_pod *pod,
							   const struct ml_connect *c,
							   int over_loopback, int to_localhost)
{
	if (c->uid == pod->proxy_uid) {
		count_event(ML_CNT_BYPASS_PROXY_DNS);
		return ML_OUT_UNTOUCHED;
	}
	if (c->gid == pod->proxy_gid) {
		if (!c->udp && over_loopback && !to_localhost) {
			count_event(ML_CNT_INBOUND_REDIRECTED);
			return ML_OUT_TO_INBOUND;
		}
		count_event(ML_CNT_BYPASS_PROXY_DNS);
		return ML_OUT_UNTOUCHED;
	}
	count_event(ML_CNT_DNS_REDIRECTED);
	return ML_OUT_TO_DNS;
}

static __always_inline enum ml_outbound_verdict decide_outbound(const struct ml_pod *pod,
								const struct ml_connect *c)
{
	int over_loopback = routed_over_loopback(pod, &c->dst);
	/* connect() to 0.0.0.0 / :: reaches 127.0.0.1 / ::1. */
	int to_localhost = addr_is_localhost(&c->dst) || addr_is_unspecified(&c->dst);
	struct ml_addr source = effective_source(c);

	if (ipv6_without_ipv6(pod, c, over_loopback) &&
	    !routed_through_excluded_interface(pod, c)) {
		count_event(ML_CNT_IPV6_REFUSED_OUTBOUND);
		return ML_OUT_REFUSED;
	}
	if (unroutable(pod, c, over_loopback))
		return ML_OUT_UNTOUCHED;
	if (routed_through_excluded_interface(pod, c)) {
		count_event(ML_CNT_BYPASS_EXCLUDED_INTERFACE);
		return ML_OUT_UNTOUCHED;
	}
	/* 1. Excluded outbound ports are never touched (TCP and UDP alike). */
	if (!(pod->flags & ML_POD_NO_EXCLUDED_OUT_PORTS) &&
	    port_listed(c->netns_cookie, c->dport, ML_PORTS_EXCLUDE_OUTBOUND)) {
		count_event(ML_CNT_BYPASS_EXCLUDED_PORT);
		return ML_OUT_UNTOUCHED;
	}
	/* 2. Envoy calling the local app from the inbound passthrough source. */
	if (over_loopback && addr_is_passthrough_source(&source)) {
		count_event(ML_CNT_BYPASS_PASSTHROUGH_SOURCE);
		return ML_OUT_UNTOUCHED;
	}
	if ((pod->flags & ML_POD_CAPTURE_DNS) && c->dport == ML_DNS_PORT) {
		if (c->udp || !(pod->flags & ML_POD_KUMA_RULES))
			return decide_dns(pod, c, over_loopback, to_localhost);
		/* Kuma: an app's TCP DNS is not captured (KO4). */
		if (c->uid != pod->proxy_uid) {
			count_event(ML_CNT_BYPASS_NOT_INCLUDED);
			return ML_OUT_UNTOUCHED;
		}
	}
	/* Other UDP is never redirected. */
	if (c->udp)
		return ML_OUT_UNTOUCHED;
	/*
	 * 3. The proxy reaching its own pod over loopback (not 127.0.0.1, not Istio's
	 * tunnel port) must traverse the inbound listener; Linkerd's does not.
	 */
	if (over_loopback && c->uid == pod->proxy_uid) {
		if (!to_localhost && !(pod->flags & ML_POD_LINKERD_RULES) &&
		    (c->dport != ML_PORT_TUNNEL || (pod->flags & ML_POD_KUMA_RULES))) {
			count_event(ML_CNT_INBOUND_REDIRECTED);
			return ML_OUT_TO_INBOUND;
		}
		count_event(ML_CNT_BYPASS_PROXY);
		return ML_OUT_UNTOUCHED;
	}
	/*
	 * 4. Anyone else reaching the pod itself over loopback is left alone — unless
	 * an included range is a loopback address, which removes this rule in Istio.
	 * It comes before the GID variant of O3, so a GID-only process reaches 15006
	 * only then.
	 */
	if (over_loopback && !(pod->flags & ML_POD_INCLUDES_LOOPBACK)) {
		count_event(ML_CNT_BYPASS_APP_LOOPBACK);
		return ML_OUT_UNTOUCHED;
	}
	/* 5. The proxy's own upstream connections. */
	if (c->uid == pod->proxy_uid) {
		count_event(ML_CNT_BYPASS_PROXY);
		return ML_OUT_UNTOUCHED;
	}
	if (c->gid == pod->proxy_gid) {
		if (over_loopback && !to_localhost && c->dport != ML_PORT_TUNNEL &&
		    !(pod->flags & ML_POD_LINKERD_RULES)) {
			count_event(ML_CNT_INBOUND_REDIRECTED);
			return ML_OUT_TO_INBOUND;
		}
		count_event(ML_CNT_BYPASS_PROXY);
		return ML_OUT_UNTOUCHED;
	}
	/* 6. 127.0.0.1 / ::1. */
	if (to_localhost) {
		count_event(ML_CNT_BYPASS_LOCALHOST);
		return ML_OUT_UNTOUCHED;
	}
	/* 7. Excluded outbound ranges. */
	if (!(pod->flags & ML_POD_NO_EXCLUDED_OUT_CIDRS) &&
	    cidr_listed(&ml_out_exclude_cidrs, c->netns_cookie, &c->dst)) {
		count_event(ML_CNT_BYPASS_EXCLUDED_CIDR);
		return ML_OUT_UNTOUCHED;
	}
	/* 8. Included outbound ports, whatever the range. */
	if (!(pod->flags & ML_POD_NO_INCLUDED_OUT_PORTS) &&
	    port_listed(c->netns_cookie, c->dport, ML_PORTS_INCLUDE_OUTBOUND)) {
		count_event(ML_CNT_OUTBOUND_REDIRECTED);
		return ML_OUT_TO_OUTBOUND;
	}
	/* 9. Included outbound ranges ("*" is a flag, not a trie entry). */
	if ((pod->flags & ML_POD_INCLUDE_ALL_OUTBOUND) ||
	    (!(pod->flags & ML_POD_NO_INCLUDED_OUT_CIDRS) &&
	     cidr_listed(&ml_out_include_cidrs, c->netns_cookie, &c->dst))) {
		count_event(ML_CNT_OUTBOUND_REDIRECTED);
		return ML_OUT_TO_OUTBOUND;
	}
	/* 10. Everything else. */
	count_event(ML_CNT_BYPASS_NOT_INCLUDED);
	return ML_OUT_UNTOUCHED;
}

#endif /* MESHLANE_OUTBOUND_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Lookups in a pod's settings: its port lists, CIDR lists and own addresses. */
#ifndef MESHLANE_POD_H
#define MESHLANE_POD_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "addr.h"
#include "maps.h"
#include "meshlane.h"

static __always_inline int port_listed(__u64 netns_cookie, __u16 port, enum ml_port_list list)
{
	struct ml_port_key key = {
		.netns_cookie = netns_cookie,
		.port = port,
		.list = list,
	};

	return bpf_map_lookup_elem(&ml_port_rules, &key) != NULL;
}

/* The value of the longest prefix of the pod's list that holds the address. */
static __always_inline __u8 *cidr_match(void *trie, __u64 netns_cookie, const struct ml_addr *addr)
{
	struct ml_cidr_key key = {
		/* The whole cookie and the whole address: the longest possible match. */
		.prefixlen = 64 + 128,
		.addr = *addr,
	};

	__builtin_memcpy(key.netns_cookie, &netns_cookie, sizeof(netns_cookie));
	return bpf_map_lookup_elem(trie, &key);
}

static __always_inline int cidr_listed(void *trie, __u64 netns_cookie, const struct ml_addr *addr)
{
	return cidr_match(trie, netns_cookie, addr) != NULL;
}

static __always_inline int addr_is_pod_ip(const struct ml_pod *pod, const struct ml_addr *addr)
{
	/* Bounded for the verifier; ip_count is at most ML_MAX_POD_IPS. */
	for (int i = 0; i < ML_MAX_POD_IPS; i++) {
		if (i >= pod->ip_count)
			break;
		if (addr_equal(&pod->ips[i], addr))
			return 1;
	}
	return 0;
}

#endif /* MESHLANE_POD_H */

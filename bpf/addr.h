/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Address helpers: every address is a 16-byte struct ml_addr, IPv4 mapped. */
#ifndef MESHLANE_ADDR_H
#define MESHLANE_ADDR_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

#include "ctx_access.h"
#include "meshlane.h"

/* Not in the UAPI headers that BPF C can include. */
#define ML_AF_INET     2
#define ML_AF_INET6    10
#define ML_SOCK_STREAM 1
#define ML_SOCK_DGRAM  2

static __always_inline struct ml_addr addr_from_ipv4(__u32 ip_be)
{
	struct ml_addr addr = {
		.words = { 0, 0, bpf_htonl(0x0000ffff), ip_be },
	};
	return addr;
}

static __always_inline struct ml_addr addr_from_ipv6(const __u32 words_be[4])
{
	struct ml_addr addr = {
		.words = { words_be[0], words_be[1], words_be[2], words_be[3] },
	};
	return addr;
}

/*
 * The address a context holds in a pair of fields (local_ip4 and local_ip6, ...),
 * by the context's family: what sk_lookup and sock_ops programs read.
 */
#define READ_FIELD_ADDR(ctx, type, ip4, ip6)                                     \
	({                                                                       \
		struct ml_addr __addr;                                           \
		if ((ctx)->family == ML_AF_INET) {                               \
			__addr = addr_from_ipv4(READ_FIELD_U32(ctx, type, ip4)); \
		} else {                                                         \
			__u32 __words[4];                                        \
			READ_FIELD_IP6(ctx, type, ip6, __words);                 \
			__addr = addr_from_ipv6(__words);                        \
		}                                                                \
		__addr;                                                          \
	})

static __always_inline int addr_is_ipv4(const struct ml_addr *addr)
{
	return addr->words[0] == 0 && addr->words[1] == 0 &&
	       addr->words[2] == bpf_htonl(0x0000ffff);
}

/* The IPv4 address of a mapped address, in network order. */
static __always_inline __u32 addr_ipv4(const struct ml_addr *addr)
{
	return addr->words[3];
}

static __always_inline int addr_equal(const struct ml_addr *a, const struct ml_addr *b)
{
	return a->words[0] == b->words[0] && a->words[1] == b->words[1] &&
	       a->words[2] == b->words[2] && a->words[3] == b->words[3];
}

/*
 * IPv4 address `ip4` or IPv6 address ::`ip6_low` (both in host order): the
 * special addresses below each have one of either family.
 */
static __always_inline int addr_is_either(const struct ml_addr *addr, __u32 ip4, __u32 ip6_low)
{
	if (addr_is_ipv4(addr))
		return addr_ipv4(addr) == bpf_htonl(ip4);
	return addr->words[0] == 0 && addr->words[1] == 0 && addr->words[2] == 0 &&
	       addr->words[3] == bpf_htonl(ip6_low);
}

/* 127.0.0.1 or ::1: the only loopback address the proxy may reach untouched. */
static __always_inline int addr_is_localhost(const struct ml_addr *addr)
{
	return addr_is_either(addr, 0x7f000001, 1);
}

/* 0.0.0.0 or ::, which connect() turns into the loopback address. */
static __always_inline int addr_is_unspecified(const struct ml_addr *addr)
{
	return addr_is_either(addr, 0, 0);
}

/* 127.0.0.6 or ::6: Envoy's source when it calls the app (inbound passthrough). */
static __always_inline int addr_is_passthrough_source(const struct ml_addr *addr)
{
	return addr_is_either(addr, 0x7f000006, 6);
}

/* 127.0.0.0/8, ::1 or ::6 (meshlane puts ::6 on the pod's lo, as Istio does). */
static __always_inline int addr_is_loopback_range(const struct ml_addr *addr)
{
	if (addr_is_ipv4(addr))
		return (bpf_ntohl(addr_ipv4(addr)) >> 24) == 127;
	return addr_is_localhost(addr) || addr_is_passthrough_source(addr);
}

#endif /* MESHLANE_ADDR_H */

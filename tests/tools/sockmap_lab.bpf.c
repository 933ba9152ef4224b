// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The sockmap lab's programs (tests/tools/sockmap_lab.py): the kernel's short
 * path reduced to its mechanism, so that each state a socket can be in is
 * measured on its own, for every TCP connection of the lab's cgroup:
 *
 *   mode 0  not in any map (plain TCP)
 *   mode 1  in a sockhash with the sk_msg program, which passes (SK_PASS)
 *   mode 2  in both maps, every message handed to the peer (BPF_F_INGRESS)
 *   mode 3  in a sockhash without a program (a receiver only), plain TCP
 *
 * In mode 2, messages of at most lab_state[3] bytes go over TCP instead (0: none):
 * the close experiment's "some data over TCP first". With lab_state[4] set, a
 * larger message hands over that many bytes (bpf_msg_apply_bytes) and the
 * program answers SK_PASS on the rest: the partial experiment asks the kernel
 * where the rest goes.
 *
 * Self-contained (no libbpf headers): clang -O2 -g -target bpf.
 */
#include <linux/bpf.h>
#include <linux/types.h>

#include "ctx_access.h"

#define SEC(name)	  __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_sock_hash_update)(struct bpf_sock_ops *skops, void *map, void *key,
				    __u64 flags) = (void *)BPF_FUNC_sock_hash_update;
static long (*bpf_msg_redirect_hash)(struct sk_msg_md *msg, void *map, void *key,
				     __u64 flags) = (void *)BPF_FUNC_msg_redirect_hash;
static long (*bpf_msg_apply_bytes)(struct sk_msg_md *msg,
				   __u32 bytes) = (void *)BPF_FUNC_msg_apply_bytes;

/* Both ends of a connection, IPv4 mapped into IPv6 like meshlane's keys. */
struct lab_key {
	__u32 local[4];
	__u32 remote[4];
	__u32 local_port;
	__u32 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct lab_key);
	__type(value, __u64);
} lab_tx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct lab_key);
	__type(value, __u64);
} lab_rx SEC(".maps");

/*
 * [0]: the mode; [1]: messages handed over; [2]: handovers that found no peer;
 * [3]: in mode 2, the largest message that still goes over TCP (0: none);
 * [4]: in mode 2, the part of a larger message handed over (0: all of it);
 * [5]: 1 while the program's next run is on the rest of such a message;
 * [6]: runs on a rest, answered SK_PASS.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} lab_state SEC(".maps");

#define LAB_MAPPED_V4 0xffff0000 /* ::ffff:0:0 in network order, on x86 */

/*
 * One end of a connection into a key's words, IPv4 mapped: the context's `ip4` or
 * `ip6` field by its family. The sock_ops and sk_msg programs read the same fields
 * from two context types.
 */
#define LAB_READ_ADDR(ctx, type, ip4, ip6, words)                    \
	do {                                                         \
		if ((ctx)->family == 2) {                            \
			(words)[2] = LAB_MAPPED_V4;                  \
			(words)[3] = READ_FIELD_U32(ctx, type, ip4); \
		} else {                                             \
			READ_FIELD_IP6(ctx, type, ip6, words);       \
		}                                                    \
	} while (0)

static __always_inline __u64 *slot(__u32 index)
{
	return bpf_map_lookup_elem(&lab_state, &index);
}

SEC("sockops")
int lab_sockops(struct bpf_sock_ops *skops)
{
	struct lab_key key = {};
	__u64 *mode = slot(0);

	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (!mode || !*mode)
		return 1;
	LAB_READ_ADDR(skops, struct bpf_sock_ops, local_ip4, local_ip6, key.local);
	LAB_READ_ADDR(skops, struct bpf_sock_ops, remote_ip4, remote_ip6, key.remote);
	key.local_port = skops->local_port;
	key.remote_port = __builtin_bswap32(skops->remote_port);
	if (*mode == 1 || *mode == 2)
		bpf_sock_hash_update(skops, &lab_tx, &key, BPF_ANY);
	bpf_sock_hash_update(skops, &lab_rx, &key, BPF_ANY);
	return 1;
}

SEC("sk_msg")
int lab_msg(struct sk_msg_md *msg)
{
	struct lab_key peer = {};
	__u64 *mode = slot(0), *tcp_max = slot(3), *part = slot(4), *rest = slot(5), *count;

	if (!mode || *mode != 2)
		return SK_PASS;
	if (tcp_max && msg->size <= *tcp_max)
		return SK_PASS;
	if (part && *part) {
		/* The kernel runs the program again on the rest of the message. */
		if (rest && *rest) {
			*rest = 0;
			bpf_msg_apply_bytes(msg, 0);
			count = slot(6);
			if (count)
				__sync_fetch_and_add(count, 1);
			return SK_PASS;
		}
		if (msg->size > *part && rest) {
			bpf_msg_apply_bytes(msg, (__u32)*part);
			*rest = 1;
		}
	}
	/* The peer's key: its local end is this socket's remote one. */
	LAB_READ_ADDR(msg, struct sk_msg_md, remote_ip4, remote_ip6, peer.local);
	LAB_READ_ADDR(msg, struct sk_msg_md, local_ip4, local_ip6, peer.remote);
	peer.local_port = __builtin_bswap32(msg->remote_port);
	peer.remote_port = msg->local_port;
	if (bpf_msg_redirect_hash(msg, &lab_rx, &peer, BPF_F_INGRESS) == SK_PASS) {
		count = slot(1);
	} else {
		/* The lab's sockets are paired before they send; never drop. */
		count = slot(2);
	}
	if (count)
		__sync_fetch_and_add(count, 1);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

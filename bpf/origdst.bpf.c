// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/getsockopt: answers SO_ORIGINAL_DST (SOL_IP) and IP6T_SO_ORIGINAL_DST
 * (SOL_IPV6) for connections meshlane redirected, the way netfilter's conntrack
 * would have. Every other getsockopt passes through untouched. It runs after the
 * kernel's own handler, on every getsockopt of every process under the cgroup,
 * so the common path is two compares.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "addr.h"
#include "ctx_access.h"
#include "maps.h"
#include "meshlane.h"

/* Return code of cgroup sockopt programs: 1 = hand the (possibly changed) result on. */
#define ML_SOCKOPT_OK 1

#define ML_SOL_IP	   0
#define ML_SOL_IPV6	   41
#define ML_SO_ORIGINAL_DST 80 /* also IP6T_SO_ORIGINAL_DST */
#define ML_PAGE_SIZE	   4096

/*
 * Leave the kernel's answer as it is. When the caller's buffer is larger than a
 * page the program only saw a truncated copy: optlen = 0 tells the kernel to
 * ignore it (kernels before 6.5 fail the caller with EFAULT otherwise; this is
 * what iptables-legacy-save's IPT_SO_GET_ENTRIES needs).
 */
static __always_inline int pass_through(struct bpf_sockopt *ctx)
{
	if (ctx->optlen > ML_PAGE_SIZE)
		ctx->optlen = 0;
	return ML_SOCKOPT_OK;
}

static __always_inline int asks_original_dst(const struct bpf_sockopt *ctx)
{
	return ctx->optname == ML_SO_ORIGINAL_DST &&
	       (ctx->level == ML_SOL_IP || ctx->level == ML_SOL_IPV6);
}

/*
 * The key the connecting socket published: its source is our peer, its
 * destination (the listener it was rewritten to) is our local address.
 */
static __always_inline int conn_key_of_accepted(struct bpf_sockopt *ctx, struct ml_conn_key *key)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 words[4];

	if (!sk)
		return -1;
	key->netns_cookie = bpf_get_netns_cookie(ctx);
	if (sk->family == ML_AF_INET) {
		key->src = addr_from_ipv4(READ_FIELD_U32(sk, struct bpf_sock, dst_ip4));
		key->dst = addr_from_ipv4(READ_FIELD_U32(sk, struct bpf_sock, src_ip4));
	} else if (sk->family == ML_AF_INET6) {
		READ_FIELD_IP6(sk, struct bpf_sock, dst_ip6, words);
		key->src = addr_from_ipv6(words);
		READ_FIELD_IP6(sk, struct bpf_sock, src_ip6, words);
		key->dst = addr_from_ipv6(words);
	} else {
		return -1;
	}
	/*
	 * dst_port is a network-order 16-bit value; the 4-byte read is the one every
	 * kernel since 5.x accepts (narrow reads came later).
	 */
	key->sport = bpf_ntohs((__u16)READ_FIELD_U32(sk, struct bpf_sock, dst_port));
	key->dport = (__u16)READ_FIELD_U32(sk, struct bpf_sock, src_port);
	return 0;
}

static __always_inline int answer_ipv4(struct bpf_sockopt *ctx, const struct ml_orig_dst *orig)
{
	struct sockaddr_in *sin = ctx->optval;

	if (!addr_is_ipv4(&orig->addr))
		return pass_through(ctx);
	if ((void *)(sin + 1) > ctx->optval_end)
		return pass_through(ctx);
	__builtin_memset(sin, 0, sizeof(*sin));
	sin->sin_family = ML_AF_INET;
	sin->sin_port = bpf_htons(orig->port);
	sin->sin_addr.s_addr = addr_ipv4(&orig->addr);
	WRITE_FIELD_U32(ctx, struct bpf_sockopt, optlen, sizeof(*sin));
	WRITE_FIELD_U32(ctx, struct bpf_sockopt, retval, 0);
	count_event(ML_CNT_ORIG_DST_ANSWERED);
	return ML_SOCKOPT_OK;
}

static __always_inline int answer_ipv6(struct bpf_sockopt *ctx, const struct ml_orig_dst *orig)
{
	struct sockaddr_in6 *sin6 = ctx->optval;

	if ((void *)(sin6 + 1) > ctx->optval_end)
		return pass_through(ctx);
	__builtin_memset(sin6, 0, sizeof(*sin6));
	sin6->sin6_family = ML_AF_INET6;
	sin6->sin6_port = bpf_htons(orig->port);
	sin6->sin6_addr.in6_u.u6_addr32[0] = orig->addr.words[0];
	sin6->sin6_addr.in6_u.u6_addr32[1] = orig->addr.words[1];
	sin6->sin6_addr.in6_u.u6_addr32[2] = orig->addr.words[2];
	sin6->sin6_addr.in6_u.u6_addr32[3] = orig->addr.words[3];
	WRITE_FIELD_U32(ctx, struct bpf_sockopt, optlen, sizeof(*sin6));
	WRITE_FIELD_U32(ctx, struct bpf_sockopt, retval, 0);
	count_event(ML_CNT_ORIG_DST_ANSWERED);
	return ML_SOCKOPT_OK;
}

/* A socket accepted through inbound steering carries its own destination. */
static __always_inline struct ml_orig_dst *steered_orig_dst(struct bpf_sockopt *ctx)
{
	struct ml_sk_redirect *steered;

	if (!ctx->sk)
		return NULL;
	steered = bpf_sk_storage_get(&ml_sk_redirects, ctx->sk, 0, 0);
	/* Steered by sk_lookup, or a redirected connect's accepting end (sockops). */
	if (!steered || (steered->orig.kind != ML_REDIRECT_STEERED && !steered->accepted))
		return NULL;
	return &steered->orig;
}

static __always_inline int answer(struct bpf_sockopt *ctx, const struct ml_orig_dst *orig)
{
	if (ctx->level == ML_SOL_IP)
		return answer_ipv4(ctx, orig);
	return answer_ipv6(ctx, orig);
}

/*
 * No record: a connection that reached one of the proxy's own ports without being
 * redirected (a direct connect to :15006 or :15001). Conntrack answers with the
 * connection's own destination then; so does this. Anything else keeps the
 * kernel's answer.
 */
static __always_inline int answer_unredirected(struct bpf_sockopt *ctx,
					       const struct ml_conn_key *key)
{
	struct ml_orig_dst own = {};
	struct ml_pod *pod;

	pod = bpf_map_lookup_elem(&ml_pods, &key->netns_cookie);
	if (!pod)
		return pass_through(ctx);
	if (key->dport != pod->inbound_port && key->dport != pod->outbound_port) {
		count_event(ML_CNT_ORIG_DST_MISSED);
		return pass_through(ctx);
	}
	own.addr = key->dst;
	own.port = key->dport;
	return answer(ctx, &own);
}

SEC("cgroup/getsockopt")
int ml_getsockopt(struct bpf_sockopt *ctx)
{
	struct ml_conn_key key = {};
	struct ml_orig_dst *orig;

	if (!asks_original_dst(ctx))
		return pass_through(ctx);
	orig = steered_orig_dst(ctx);
	if (orig)
		return answer(ctx, orig);
	if (conn_key_of_accepted(ctx, &key))
		return pass_through(ctx);
	orig = bpf_map_lookup_elem(&ml_conn_orig_dst, &key);
	if (!orig)
		return answer_unredirected(ctx, &key);
	return answer(ctx, orig);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

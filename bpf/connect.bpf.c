// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/connect4 and cgroup/connect6: the outbound capture. Attached once per node;
 * a socket outside every mesh pod costs one netns-cookie hash lookup and is never
 * changed. cgroup/getpeername4/6 keep the rewrite invisible: like a NATed socket,
 * a redirected one reports the destination the app asked for as its peer.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "addr.h"
#include "ctx_access.h"
#include "maps.h"
#include "meshlane.h"
#include "outbound.h"

/* Return codes of cgroup sock_addr programs. */
#define ML_SOCK_ALLOW  1
#define ML_SOCK_REJECT 0 /* the caller gets EPERM */

static __always_inline int is_tcp(const struct bpf_sock_addr *ctx)
{
	return ctx->type == ML_SOCK_STREAM && ctx->protocol == IPPROTO_TCP;
}

static __always_inline struct ml_addr bound_source(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 words[4];

	if (sk->family == ML_AF_INET)
		return addr_from_ipv4(READ_FIELD_U32(sk, struct bpf_sock, src_ip4));
	words[0] = READ_FIELD_U32(sk, struct bpf_sock, src_ip6[0]);
	words[1] = READ_FIELD_U32(sk, struct bpf_sock, src_ip6[1]);
	words[2] = READ_FIELD_U32(sk, struct bpf_sock, src_ip6[2]);
	words[3] = READ_FIELD_U32(sk, struct bpf_sock, src_ip6[3]);
	return addr_from_ipv6(words);
}

/*
 * Remember where the connect was going, on the socket itself; sockops publishes
 * it under the connection's tuple once the source port is chosen.
 */
static __always_inline int record_orig_dst(struct bpf_sock_addr *ctx, const struct ml_connect *c,
					   enum ml_outbound_verdict verdict)
{
	struct ml_sk_redirect *redirect;

	redirect = bpf_sk_storage_get(&ml_sk_redirects, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!redirect)
		return -1;
	__builtin_memset(redirect, 0, sizeof(*redirect));
	redirect->orig.addr = c->dst;
	redirect->orig.port = c->dport;
	redirect->orig.kind =
		verdict == ML_OUT_TO_INBOUND ? ML_REDIRECT_INBOUND : ML_REDIRECT_OUTBOUND;
	return 0;
}

static __always_inline __u16 listener_port(const struct ml_pod *pod,
					   enum ml_outbound_verdict verdict)
{
	return verdict == ML_OUT_TO_INBOUND ? pod->inbound_port : pod->outbound_port;
}

/* Decide and, when captured, record and rewrite. Returns the sock_addr verdict. */
static __always_inline int capture_connect(struct bpf_sock_addr *ctx, struct ml_connect *c,
					   const struct ml_pod *pod, int ipv6_socket)
{
	enum ml_outbound_verdict verdict = decide_outbound(pod, c);
	__u16 port;

	if (verdict == ML_OUT_UNTOUCHED)
		return ML_SOCK_ALLOW;
	/*
	 * A capture we cannot record would reach the proxy without a destination:
	 * refuse the connect rather than let it escape or loop.
	 */
	if (record_orig_dst(ctx, c, verdict)) {
		count_event(ML_CNT_RECORD_FAILED);
		return ML_SOCK_REJECT;
	}
	port = listener_port(pod, verdict);
	ctx->user_port = bpf_htons(port);
	if (!ipv6_socket) {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	} else if (addr_is_ipv4(&c->dst)) {
		/* IPv4 on a dual-stack socket: Envoy may listen on IPv4 only. */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	return ML_SOCK_ALLOW;
}

static __always_inline void read_caller(struct ml_connect *c)
{
	__u64 uid_gid = bpf_get_current_uid_gid();

	c->uid = (__u32)uid_gid;
	c->gid = (__u32)(uid_gid >> 32);
}

SEC("cgroup/connect4")
int ml_connect4(struct bpf_sock_addr *ctx)
{
	struct ml_connect c = {};
	struct ml_pod *pod;

	if (!is_tcp(ctx))
		return ML_SOCK_ALLOW;
	c.netns_cookie = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ml_pods, &c.netns_cookie);
	if (!pod || !(pod->flags & ML_POD_CAPTURE_OUTBOUND))
		return ML_SOCK_ALLOW;

	c.dst = addr_from_ipv4(ctx->user_ip4);
	c.dport = bpf_ntohs((__u16)ctx->user_port);
	c.bound_src = bound_source(ctx);
	read_caller(&c);
	return capture_connect(ctx, &c, pod, 0);
}

SEC("cgroup/connect6")
int ml_connect6(struct bpf_sock_addr *ctx)
{
	struct ml_connect c = {};
	struct ml_pod *pod;
	__u32 dst[4];

	if (!is_tcp(ctx))
		return ML_SOCK_ALLOW;
	c.netns_cookie = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ml_pods, &c.netns_cookie);
	if (!pod || !(pod->flags & ML_POD_CAPTURE_OUTBOUND))
		return ML_SOCK_ALLOW;

	dst[0] = READ_FIELD_U32(ctx, struct bpf_sock_addr, user_ip6[0]);
	dst[1] = READ_FIELD_U32(ctx, struct bpf_sock_addr, user_ip6[1]);
	dst[2] = READ_FIELD_U32(ctx, struct bpf_sock_addr, user_ip6[2]);
	dst[3] = READ_FIELD_U32(ctx, struct bpf_sock_addr, user_ip6[3]);
	c.dst = addr_from_ipv6(dst);
	c.dport = bpf_ntohs((__u16)ctx->user_port);
	c.bound_src = bound_source(ctx);
	read_caller(&c);
	return capture_connect(ctx, &c, pod, 1);
}

/* The original destination of a socket this program redirected, if any. */
static __always_inline struct ml_sk_redirect *redirect_of(struct bpf_sock_addr *ctx)
{
	struct ml_sk_redirect *redirect = bpf_sk_storage_get(&ml_sk_redirects, ctx->sk, 0, 0);

	/* Steered accepted sockets carry their own address there: not a rewrite. */
	if (!redirect || redirect->orig.kind == ML_REDIRECT_STEERED)
		return NULL;
	return redirect;
}

SEC("cgroup/getpeername4")
int ml_getpeername4(struct bpf_sock_addr *ctx)
{
	struct ml_sk_redirect *redirect = redirect_of(ctx);

	if (!redirect || !addr_is_ipv4(&redirect->orig.addr))
		return ML_SOCK_ALLOW;
	ctx->user_ip4 = addr_ipv4(&redirect->orig.addr);
	ctx->user_port = bpf_htons(redirect->orig.port);
	return ML_SOCK_ALLOW;
}

SEC("cgroup/getpeername6")
int ml_getpeername6(struct bpf_sock_addr *ctx)
{
	struct ml_sk_redirect *redirect = redirect_of(ctx);

	if (!redirect)
		return ML_SOCK_ALLOW;
	/* IPv4 destinations of a dual-stack socket come back IPv4-mapped, as asked. */
	ctx->user_ip6[0] = redirect->orig.addr.words[0];
	ctx->user_ip6[1] = redirect->orig.addr.words[1];
	ctx->user_ip6[2] = redirect->orig.addr.words[2];
	ctx->user_ip6[3] = redirect->orig.addr.words[3];
	ctx->user_port = bpf_htons(redirect->orig.port);
	return ML_SOCK_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The outbound capture, attached once per node. A socket outside every mesh pod
 * costs one netns-cookie hash lookup and is never changed.
 * - cgroup/connect4, connect6: TCP connects (and connected UDP to port 53 when DNS
 *   is captured) are rewritten to the proxy's listeners;
 * - cgroup/sendmsg4, sendmsg6: unconnected UDP datagrams to port 53 likewise;
 * - cgroup/recvmsg4, recvmsg6 and getpeername4, getpeername6 keep the rewrite
 *   invisible: like a NATed socket, a redirected one sees the server it asked for.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
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

static __always_inline int is_udp(const struct bpf_sock_addr *ctx)
{
	return ctx->type == ML_SOCK_DGRAM && ctx->protocol == IPPROTO_UDP;
}

static __always_inline struct ml_addr bound_source(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 words[4];

	if (sk->family == ML_AF_INET)
		return addr_from_ipv4(READ_FIELD_U32(sk, struct bpf_sock, src_ip4));
	READ_FIELD_IP6(sk, struct bpf_sock, src_ip6, words);
	return addr_from_ipv6(words);
}

/* The address the context holds (destination, or source for recvmsg). */
static __always_inline struct ml_addr user_addr(struct bpf_sock_addr *ctx, int ipv6)
{
	__u32 words[4];

	if (!ipv6)
		return addr_from_ipv4(ctx->user_ip4);
	READ_FIELD_IP6(ctx, struct bpf_sock_addr, user_ip6, words);
	return addr_from_ipv6(words);
}

/* Writes an address back: IPv4 as is, IPv6 (IPv4 mapped where it was) by words. */
static __always_inline void set_user_addr(struct bpf_sock_addr *ctx, int ipv6,
					  const struct ml_addr *addr, __u16 port)
{
	if (!ipv6) {
		ctx->user_ip4 = addr_ipv4(addr);
	} else {
		ctx->user_ip6[0] = addr->words[0];
		ctx->user_ip6[1] = addr->words[1];
		ctx->user_ip6[2] = addr->words[2];
		ctx->user_ip6[3] = addr->words[3];
	}
	ctx->user_port = bpf_htons(port);
}

static __always_inline enum ml_redirect_kind kind_of(enum ml_outbound_verdict verdict)
{
	switch (verdict) {
	case ML_OUT_TO_INBOUND:
		return ML_REDIRECT_INBOUND;
	case ML_OUT_TO_DNS:
		return ML_REDIRECT_DNS;
	default:
		return ML_REDIRECT_OUTBOUND;
	}
}

/*
 * The MPTCP socket an MPTCP subflow belongs to, or NULL. An MPTCP socket connects
 * through its first subflow, a TCP socket: the connect hooks see the subflow, while
 * the application's getpeername asks the MPTCP socket. On kernels without the
 * helper (before 5.19) CO-RE drops the call and MPTCP peers read as the listener.
 */
static __always_inline void *mptcp_parent(struct bpf_sock_addr *ctx)
{
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_skc_to_mptcp_sock))
		return NULL;
	return bpf_skc_to_mptcp_sock(ctx->sk);
}

/* The record's copy on the MPTCP socket, for getpeername; best effort. */
static __always_inline void copy_to_mptcp_parent(struct bpf_sock_addr *ctx,
						 const struct ml_sk_redirect *redirect)
{
	struct ml_sk_redirect *copy;
	void *parent = mptcp_parent(ctx);

	if (!parent)
		return;
	copy = bpf_sk_storage_get(&ml_sk_redirects, parent, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (copy)
		*copy = *redirect;
}

/* A socket connecting again elsewhere: nothing of an earlier capture stays. */
static __always_inline void forget_record(struct bpf_sock_addr *ctx)
{
	void *parent = mptcp_parent(ctx);

	bpf_sk_storage_delete(&ml_sk_redirects, ctx->sk);
	if (parent)
		bpf_sk_storage_delete(&ml_sk_redirects, parent);
}

/*
 * Remember where the socket was going, on the socket itself: sockops publishes it
 * under the connection's tuple once the source port is chosen (TCP), recvmsg and
 * getpeername read it back.
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
	redirect->orig.kind = kind_of(verdict);
	copy_to_mptcp_parent(ctx, redirect);
	return 0;
}

static __always_inline __u16 listener_port(const struct ml_pod *pod,
					   enum ml_outbound_verdict verdict)
{
	switch (verdict) {
	case ML_OUT_TO_INBOUND:
		return pod->inbound_port;
	case ML_OUT_TO_DNS:
		return pod->dns_port;
	default:
		return pod->outbound_port;
	}
}

/* 127.0.0.1, [::1], or ::ffff:127.0.0.1 for IPv4 on a dual-stack socket. */
static __always_inline struct ml_addr listener_addr(int ipv6_socket, const struct ml_addr *dst)
{
	struct ml_addr localhost = addr_from_ipv4(bpf_htonl(0x7f000001));

	if (ipv6_socket && !addr_is_ipv4(dst)) {
		localhost.words[2] = 0;
		localhost.words[3] = bpf_htonl(1);
	}
	return localhost;
}

/* Decide and, when captured, record and rewrite. Returns the sock_addr verdict. */
static __always_inline int capture(struct bpf_sock_addr *ctx, struct ml_connect *c,
				   const struct ml_pod *pod, int ipv6_socket, int on_connect)
{
	enum ml_outbound_verdict verdict = decide_outbound(pod, c);
	struct ml_addr listener;

	if (verdict == ML_OUT_REFUSED)
		return ML_SOCK_REJECT;
	if (verdict == ML_OUT_UNTOUCHED) {
		/*
		 * A socket connected again (TCP after a refused connect or an AF_UNSPEC
		 * disconnect, UDP to another server) must not keep the record of its
		 * earlier capture: getpeername would show the old destination and
		 * sockops would publish it for the new connection. Only on connect: a
		 * connected IPv4-mapped UDP socket's every datagram passes sendmsg4 too,
		 * addressed to where connect already sent it.
		 */
		if (on_connect)
			forget_record(ctx);
		return ML_SOCK_ALLOW;
	}
	/*
	 * A capture we cannot record would reach the proxy without a destination:
	 * refuse the connect rather than let it escape or loop.
	 */
	if (record_orig_dst(ctx, c, verdict)) {
		count_event(ML_CNT_RECORD_FAILED);
		return ML_SOCK_REJECT;
	}
	listener = listener_addr(ipv6_socket, &c->dst);
	set_user_addr(ctx, ipv6_socket, &listener, listener_port(pod, verdict));
	return ML_SOCK_ALLOW;
}

/* The pod of the socket, if it is in one whose outbound is captured. */
static __always_inline struct ml_pod *captured_pod(struct bpf_sock_addr *ctx, __u64 *netns_cookie)
{
	struct ml_pod *pod;

	*netns_cookie = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ml_pods, netns_cookie);
	if (!pod || !(pod->flags & ML_POD_CAPTURE_OUTBOUND))
		return NULL;
	return pod;
}

static __always_inline int capture_outbound(struct bpf_sock_addr *ctx, int ipv6_socket,
					    int on_connect)
{
	struct ml_connect c = {};
	struct ml_pod *pod;
	__u64 uid_gid;

	c.udp = is_udp(ctx);
	if (!c.udp && !is_tcp(ctx))
		return ML_SOCK_ALLOW;
	pod = captured_pod(ctx, &c.netns_cookie);
	if (!pod)
		return ML_SOCK_ALLOW;
	c.dst = user_addr(ctx, ipv6_socket);
	c.dport = bpf_ntohs((__u16)ctx->user_port);
	c.bound_src = bound_source(ctx);
	uid_gid = bpf_get_current_uid_gid();
	c.uid = (__u32)uid_gid;
	c.gid = (__u32)(uid_gid >> 32);
	return capture(ctx, &c, pod, ipv6_socket, on_connect);
}

SEC("cgroup/connect4")
int ml_connect4(struct bpf_sock_addr *ctx)
{
	return capture_outbound(ctx, 0, 1);
}

SEC("cgroup/connect6")
int ml_connect6(struct bpf_sock_addr *ctx)
{
	return capture_outbound(ctx, 1, 1);
}

/* Unconnected UDP: only DNS is ever redirected, decided per datagram. */
SEC("cgroup/sendmsg4")
int ml_sendmsg4(struct bpf_sock_addr *ctx)
{
	return capture_outbound(ctx, 0, 0);
}

SEC("cgroup/sendmsg6")
int ml_sendmsg6(struct bpf_sock_addr *ctx)
{
	return capture_outbound(ctx, 1, 0);
}

/* The original destination of a socket these programs redirected, if any. */
static __always_inline struct ml_sk_redirect *redirect_of(struct bpf_sock_addr *ctx)
{
	struct ml_sk_redirect *redirect = bpf_sk_storage_get(&ml_sk_redirects, ctx->sk, 0, 0);

	/*
	 * Accepted sockets carry a destination there too (steered: their own address;
	 * a redirected connect's accepting end: the client's), but nothing rewrote
	 * their peer.
	 */
	if (!redirect || redirect->orig.kind == ML_REDIRECT_STEERED || redirect->accepted)
		return NULL;
	return redirect;
}

/*
 * Puts the redirect's original destination back into the caller's address, where
 * the socket can hold it: an IPv4 socket cannot be given an IPv6 address. IPv4
 * destinations of a dual-stack socket come back IPv4-mapped, as asked. Returns
 * whether it did.
 */
static __always_inline int put_back_original(struct bpf_sock_addr *ctx, int ipv6_socket,
					     struct ml_sk_redirect *redirect)
{
	if (!ipv6_socket && !addr_is_ipv4(&redirect->orig.addr))
		return 0;
	set_user_addr(ctx, ipv6_socket, &redirect->orig.addr, redirect->orig.port);
	return 1;
}

static __always_inline int restore_peer(struct bpf_sock_addr *ctx, int ipv6_socket)
{
	struct ml_sk_redirect *redirect = redirect_of(ctx);

	if (redirect)
		put_back_original(ctx, ipv6_socket, redirect);
	return ML_SOCK_ALLOW;
}

SEC("cgroup/getpeername4")
int ml_getpeername4(struct bpf_sock_addr *ctx)
{
	return restore_peer(ctx, 0);
}

SEC("cgroup/getpeername6")
int ml_getpeername6(struct bpf_sock_addr *ctx)
{
	return restore_peer(ctx, 1);
}

/*
 * A DNS reply comes from the DNS proxy's address; resolvers (glibc among them)
 * drop replies whose source is not the server they asked, so it must read as that
 * server. With one unconnected socket asking several servers at once, replies all
 * read as the last one asked.
 */
static __always_inline int restore_reply_source(struct bpf_sock_addr *ctx, int ipv6_socket)
{
	struct ml_sk_redirect *redirect = redirect_of(ctx);
	struct ml_addr source;
	struct ml_pod *pod;
	__u64 netns_cookie;

	if (!redirect || redirect->orig.kind != ML_REDIRECT_DNS)
		return ML_SOCK_ALLOW;
	netns_cookie = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ml_pods, &netns_cookie);
	if (!pod || bpf_ntohs((__u16)ctx->user_port) != pod->dns_port)
		return ML_SOCK_ALLOW;
	source = user_addr(ctx, ipv6_socket);
	if (!addr_is_localhost(&source))
		return ML_SOCK_ALLOW;
	if (put_back_original(ctx, ipv6_socket, redirect))
		count_event(ML_CNT_DNS_REPLY_RESTORED);
	return ML_SOCK_ALLOW;
}

SEC("cgroup/recvmsg4")
int ml_recvmsg4(struct bpf_sock_addr *ctx)
{
	return restore_reply_source(ctx, 0);
}

SEC("cgroup/recvmsg6")
int ml_recvmsg6(struct bpf_sock_addr *ctx)
{
	return restore_reply_source(ctx, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

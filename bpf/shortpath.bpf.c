// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_msg: the short path (docs/shortpath.md). Attached to ml_short_tx, it runs
 * on every sendmsg of a socket there and hands the message to the peer socket's
 * receive queue (bpf_msg_redirect_hash with BPF_F_INGRESS), skipping TCP/IP.
 *
 * Bytes never overtake each other. The reader drains handed-over messages before
 * its TCP receive queue, so a socket may go from the short path to TCP at any
 * message. Back from TCP only when nothing can be in flight there: all its TCP
 * bytes ACKed and read by the peer. The first message decides: a socket whose
 * peer is not in ml_short_rx yet sends over TCP.
 *
 * Why go to TCP at all:
 * - backpressure: the kernel queues handed-over messages at the reader without
 *   any limit (its receive buffer does not apply), so a slow reader would pile
 *   up memory; over TCP its window stops the sender, as without meshlane;
 * - small messages streamed one way: each handed-over message costs an
 *   allocation and a wake-up of the reader, where TCP coalesces small writes, so
 *   small back-to-back sends are faster over TCP (below 16 KiB over loopback,
 *   below 1 KiB between pods).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "kernel_fields.h"
#include "maps.h"
#include "meshlane.h"

/*
 * Settings, per node before load; the defaults come from the measurements in
 * docs/shortpath.md. The most a reader may hold unread before its sender goes to
 * TCP (the reader's receive buffer if that is larger): what TCP would buffer.
 */
const volatile __u32 ml_short_backlog_bytes = 4 << 20;
/*
 * A message of at least this many bytes is faster handed over than sent over TCP,
 * even back to back: over loopback (an app and its proxy, where TCP is cheap) ...
 */
const volatile __u32 ml_short_small_bytes_loopback = 16384;
/*
 * ... and between pods: hop by hop the crossover is 64-256 B (veth and bridge make
 * TCP dearer), but behind two proxies streams below 1 KiB measured best on TCP.
 */
const volatile __u32 ml_short_small_bytes_pods = 1024;
/* This many small messages in a row, unanswered, close together: TCP takes over. */
const volatile __u32 ml_short_small_run = 16;
/*
 * "Close together" for an app's socket, which also knows whether it was answered
 * (it receives over TCP) ...
 */
const volatile __u64 ml_short_small_gap_ns = 100000;
/*
 * ... and for a proxy's socket, whose answers may come over the short path and go
 * unseen: closer than any round trip through two proxies, so that small
 * request/response traffic stays.
 */
const volatile __u64 ml_short_small_gap_ns_proxy = 20000;

/* A sender only: it leaves ml_short_tx at its next ACK once on TCP (shortpath.h). */
static __always_inline int sender_only(const struct ml_short_sock *state)
{
	return state->roles == ML_SHORT_TX;
}

/*
 * True once the socket streams small messages: ml_short_small_run of them in a
 * row, each close to the last, with nothing received over TCP in between.
 */
static __always_inline int streams_small_messages(struct sk_msg_md *msg,
						  struct ml_short_sock *state)
{
	__u32 small_bytes = state->class == ML_SHORT_LOOPBACK ? ml_short_small_bytes_loopback
							      : ml_short_small_bytes_pods;
	__u64 gap = sender_only(state) ? ml_short_small_gap_ns : ml_short_small_gap_ns_proxy;
	struct tcp_sock___ml *tcp;
	__u32 rcv_nxt;
	__u64 now;

	if (msg->size >= small_bytes) {
		state->small_run = 0;
		return 0;
	}
	tcp = (struct tcp_sock___ml *)bpf_skc_to_tcp_sock(msg->sk);
	if (!tcp)
		return 0;
	/* rcv_nxt moves when the peer answers over TCP. */
	rcv_nxt = tcp->rcv_nxt;
	now = bpf_ktime_get_ns();
	if (rcv_nxt != state->last_rcv_nxt || now - state->last_small_ns > gap)
		state->small_run = 0;
	state->last_rcv_nxt = rcv_nxt;
	state->last_small_ns = now;
	if (state->small_run < ml_short_small_run)
		state->small_run++;
	return state->small_run >= ml_short_small_run;
}

/* The reader holds more unread than TCP would let it. */
static __always_inline int peer_is_behind(const struct ml_short_sock *state)
{
	struct sock___ml *peer = (struct sock___ml *)state->peer_sk;
	int unread, limit = ml_short_backlog_bytes;
	int rcvbuf;

	if (!peer)
		return 0;
	unread = BPF_CORE_READ(peer, sk_backlog.rmem_alloc.counter);
	rcvbuf = BPF_CORE_READ(peer, sk_rcvbuf);
	if (rcvbuf > limit)
		limit = rcvbuf;
	return unread >= limit;
}

/*
 * Back from TCP is safe when no byte sent over TCP can still be read after a
 * handed-over one: ours all ACKed (in the peer's receive queue or read) and the
 * peer has read everything its TCP received (which comes after what it held).
 */
static __always_inline int tcp_is_drained(struct sk_msg_md *msg, const struct ml_short_sock *state)
{
	struct tcp_sock___ml *peer = (struct tcp_sock___ml *)state->peer_sk;
	struct tcp_sock___ml *tcp;

	if (!peer)
		return 0;
	tcp = (struct tcp_sock___ml *)bpf_skc_to_tcp_sock(msg->sk);
	if (!tcp || tcp->snd_una != tcp->write_seq)
		return 0;
	return BPF_CORE_READ(peer, copied_seq) == BPF_CORE_READ(peer, rcv_nxt) &&
	       !peer_is_behind(state);
}

/* Sends this message over TCP, and the following ones until decided otherwise. */
static __always_inline int pass_to_tcp(struct ml_short_sock *state, enum ml_counter why)
{
	state->state = ML_SHORT_PASSING;
	count_event(why);
	return SK_PASS;
}

SEC("sk_msg")
int ml_short_msg(struct sk_msg_md *msg)
{
	struct ml_short_sock *state;
	struct ml_short_key peer;
	__u32 size = msg->size;
	__u8 was = ML_SHORT_UNDECIDED;

	if (!msg->sk)
		return SK_PASS;
	state = bpf_sk_storage_get(&ml_short_socks, msg->sk, 0, 0);
	if (!state)
		return SK_PASS;
	was = state->state;
	if (was == ML_SHORT_PASSING) {
		if (sender_only(state) || !tcp_is_drained(msg, state))
			return SK_PASS;
		state->small_run = 0; /* a pause let TCP drain: a new stream */
	}
	if (streams_small_messages(msg, state)) {
		state->small_run = 0;
		return pass_to_tcp(state, ML_CNT_SHORT_FELL_BACK);
	}
	if (was == ML_SHORT_REDIRECTING && peer_is_behind(state))
		return pass_to_tcp(state, ML_CNT_SHORT_BACKPRESSURE);
	peer = state->peer;
	/* SK_DROP means the peer is not in the map: never drop, send over TCP. */
	if (bpf_msg_redirect_hash(msg, &ml_short_rx, &peer, BPF_F_INGRESS) != SK_PASS) {
		state->peer_sk = 0; /* whatever it was, it is gone */
		return pass_to_tcp(state, was == ML_SHORT_UNDECIDED ? ML_CNT_SHORT_PEER_MISSING
								    : ML_CNT_SHORT_PEER_GONE);
	}
	if (!state->peer_sk)
		state->peer_sk = (__u64)BPF_CORE_READ((struct sk_msg___ml *)msg, sk_redir);
	if (was == ML_SHORT_PASSING)
		count_event(ML_CNT_SHORT_RESUMED);
	state->state = ML_SHORT_REDIRECTING;
	count_event(ML_CNT_SHORT_REDIRECTED_MSGS);
	count_events(ML_CNT_SHORT_REDIRECTED_BYTES, size);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

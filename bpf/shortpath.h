/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The short path, sockops half (docs/shortpath.md): at ESTABLISHED, put the ends
 * of a connection between two local sockets into ml_short_tx (its sends are
 * handed over by sk_msg) and ml_short_rx (it may receive handed-over messages).
 *
 * Only proxy sockets receive: the proxy reads with recvmsg, while an app may read
 * with splice(2) or sendfile(2), which never see handed-over messages (the kernel
 * keeps them in the psock's queue, splice reads the TCP receive queue), so an
 * app's reader would stall and lose them. Apps' sockets send only where the pod
 * opted in: a blocking reader on a socket in a sockmap can get a spurious EAGAIN
 * (docs/shortpath.md). A socket goes into ml_short_tx only when its peer will be
 * in ml_short_rx: a socket there that is not redirected pays for the sk_msg
 * machinery on every send (20-60% on this kernel, and 40 ms stalls).
 *
 * The active end decides first (ACTIVE_ESTABLISHED_CB comes before the passive
 * end exists) and leaves an offer in ml_short_offers; the passive end pairs with
 * it or releases it.
 */
#ifndef MESHLANE_SHORTPATH_H
#define MESHLANE_SHORTPATH_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "addr.h"
#include "inbound.h"
#include "kernel_fields.h"
#include "maps.h"
#include "meshlane.h"
#include "pod.h"

/* One end of a connection, as sockops sees it. */
struct short_end {
	__u64 netns_cookie;
	const struct ml_pod *pod;
	struct ml_addr local;
	struct ml_addr remote;
	__u16 local_port;
	__u16 remote_port;
};

static __always_inline struct ml_short_key short_key_of(__u64 netns_cookie,
							const struct ml_addr *local,
							const struct ml_addr *remote,
							__u16 local_port, __u16 remote_port)
{
	struct ml_short_key key = {
		.netns_cookie = netns_cookie,
		.local = *local,
		.remote = *remote,
		.local_port = local_port,
		.remote_port = remote_port,
	};
	return key;
}

/* The socket's owner is the pod's proxy (for an accepted socket: the listener's). */
static __always_inline int socket_is_proxy(struct bpf_sock_ops *skops, const struct ml_pod *pod)
{
	struct bpf_sock *sk = skops->sk;
	struct sock___ml *full;

	if (!sk)
		return 0;
	/* A BTF pointer to the whole socket; sk_uid is not in struct bpf_sock. */
	full = (struct sock___ml *)bpf_skc_to_tcp_sock(sk);
	if (!full)
		return 0;
	return full->sk_uid.val == pod->proxy_uid;
}

/*
 * The netns cookie of the pod at the other end: this pod (loopback, or one of its
 * own addresses) or another pod of the node on the short path. 0 otherwise.
 */
static __always_inline __u64 peer_netns_of(const struct short_end *end,
					   const struct ml_pod **peer_pod)
{
	const struct ml_pod *other;
	__u64 *cookie;

	if (addr_is_loopback_range(&end->remote) || addr_is_pod_ip(end->pod, &end->remote)) {
		*peer_pod = end->pod;
		return end->netns_cookie;
	}
	cookie = bpf_map_lookup_elem(&ml_pod_ips, &end->remote);
	if (!cookie || *cookie == end->netns_cookie)
		return 0;
	other = bpf_map_lookup_elem(&ml_pods, cookie);
	if (!other || !(other->flags & ML_POD_SHORT_PATH))
		return 0;
	*peer_pod = other;
	return *cookie;
}

/*
 * Which roles the active end takes. A proxy socket receives (ml_short_rx) when its
 * peer will send to it; a socket sends (ml_short_tx) when its peer is a proxy.
 * An app's socket sends only where its pod opted in (ML_POD_SHORT_PATH_APP).
 * Inside one pod only connects that meshlane sent to the proxy's listeners reach
 * a proxy, and only the proxy's passthrough connects (from 127.0.0.6 / ::6) reach
 * the app; between pods, the peer's inbound decision tells whether its proxy
 * accepts the connection.
 */
static __always_inline __u32 active_roles(struct bpf_sock_ops *skops, const struct short_end *end,
					  __u64 peer_netns, const struct ml_pod *peer_pod)
{
	struct ml_sk_redirect *redirect;
	struct bpf_sock *sk = skops->sk;
	int proxy, peer_proxy, peer_app_sends;

	if (!sk)
		return 0;
	proxy = socket_is_proxy(skops, end->pod);
	if (!proxy && !(end->pod->flags & ML_POD_SHORT_PATH_APP))
		return 0;
	if (peer_netns != end->netns_cookie) {
		peer_proxy = decide_inbound(peer_pod, peer_netns, end->remote_port, &end->local) ==
			     ML_IN_TO_PROXY;
		peer_app_sends = peer_pod->flags & ML_POD_SHORT_PATH_APP;
	} else {
		redirect = bpf_sk_storage_get(&ml_sk_redirects, sk, 0, 0);
		if (redirect && redirect->published &&
		    (redirect->orig.kind == ML_REDIRECT_OUTBOUND ||
		     redirect->orig.kind == ML_REDIRECT_INBOUND))
			peer_proxy = 1;
		else if (proxy && addr_is_passthrough_source(&end->local))
			peer_proxy = 0; /* the proxy calls its app */
		else
			return 0; /* loopback meshlane did not steer: not a mesh hop */
		peer_app_sends = end->pod->flags & ML_POD_SHORT_PATH_APP;
	}
	return (peer_proxy ? ML_SHORT_TX : 0) |
	       (proxy && (peer_proxy || peer_app_sends) ? ML_SHORT_RX : 0);
}

/*
 * A sender's wait before it resends over TCP (rule 2 of docs/shortpath.md): set
 * at the connect for the active end, when it joins as a sender for the passive
 * one. Both ends are on this node, microseconds apart, and a segment is lost only
 * when a receiver full of handed-over messages has no room for it; TCP's 200 ms
 * minimum would stall the stream for nothing. The kernel refuses less than two ticks: 5 ms
 * is two at HZ 250 and above, 20 ms at HZ 100. A kernel that refuses both keeps
 * its own minimum (a slower stream after a switch to TCP, nothing lost).
 */
#define ML_SHORT_RTO_MIN_US	   5000
#define ML_SHORT_RTO_MIN_COARSE_US 20000
#define ML_SOL_TCP		   6 /* IPPROTO_TCP, the level of TCP_BPF_RTO_MIN */

static __always_inline void shorten_retransmission_wait(struct bpf_sock_ops *skops)
{
	int rto_min_us = ML_SHORT_RTO_MIN_US;

	if (!bpf_setsockopt(skops, ML_SOL_TCP, TCP_BPF_RTO_MIN, &rto_min_us, sizeof(rto_min_us)))
		return;
	rto_min_us = ML_SHORT_RTO_MIN_COARSE_US;
	bpf_setsockopt(skops, ML_SOL_TCP, TCP_BPF_RTO_MIN, &rto_min_us, sizeof(rto_min_us));
}

/* Puts the socket into the maps of its roles; returns the roles it got. */
static __always_inline __u32 join_short_path(struct bpf_sock_ops *skops,
					     const struct ml_short_key *self,
					     const struct ml_short_key *peer, __u32 roles)
{
	__u8 class =
		self->netns_cookie == peer->netns_cookie ? ML_SHORT_LOOPBACK : ML_SHORT_POD_TO_POD;
	struct ml_short_key key = *self;
	struct bpf_sock *sk = skops->sk;
	struct ml_short_sock *state;

	if (roles & ML_SHORT_RX) {
		if (bpf_sock_hash_update(skops, &ml_short_rx, &key, BPF_ANY)) {
			count_event(ML_CNT_SHORT_INSERT_FAILED);
			roles &= ~ML_SHORT_RX;
		} else {
			count_event(ML_CNT_SHORT_RX_INSERTED);
		}
	}
	if (!(roles & ML_SHORT_TX))
		return roles;
	if (!sk)
		return roles & ~ML_SHORT_TX;
	/* The storage first: sk_msg reads it from the first message on. */
	state = bpf_sk_storage_get(&ml_short_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!state) {
		count_event(ML_CNT_SHORT_INSERT_FAILED);
		return roles & ~ML_SHORT_TX;
	}
	__builtin_memset(state, 0, sizeof(*state));
	state->peer = *peer;
	state->roles = roles;
	state->class = class;
	if (bpf_sock_hash_update(skops, &ml_short_tx, &key, BPF_ANY)) {
		count_event(ML_CNT_SHORT_INSERT_FAILED);
		state->state = ML_SHORT_PASSING;
		return roles & ~ML_SHORT_TX;
	}
	count_event(ML_CNT_SHORT_TX_INSERTED);
	if (roles == ML_SHORT_TX)
		/*
		 * A sender only: when sk_msg sends it back to TCP, its first ACK
		 * (RTT_CB) takes it out of the map, and its sends cost nothing again.
		 */
		bpf_sock_ops_cb_flags_set(skops,
					  skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTT_CB_FLAG);
	return roles;
}

/* ACTIVE_ESTABLISHED_CB: the connecting end decides and leaves its offer. */
static __always_inline void short_path_active(struct bpf_sock_ops *skops, struct short_end *end)
{
	const struct ml_pod *peer_pod = NULL;
	struct ml_short_offer offer = {};
	struct ml_short_key self, peer;
	__u64 peer_netns;
	__u32 roles;

	if (!(end->pod->flags & ML_POD_SHORT_PATH))
		return;
	peer_netns = peer_netns_of(end, &peer_pod);
	if (!peer_netns || !peer_pod)
		return;
	roles = active_roles(skops, end, peer_netns, peer_pod);
	if (!roles)
		return;
	self = short_key_of(end->netns_cookie, &end->local, &end->remote, end->local_port,
			    end->remote_port);
	peer = short_key_of(peer_netns, &end->remote, &end->local, end->remote_port,
			    end->local_port);
	offer.roles = join_short_path(skops, &self, &peer, roles);
	if (offer.roles)
		bpf_map_update_elem(&ml_short_offers, &self, &offer, BPF_ANY);
}

/* PASSIVE_ESTABLISHED_CB: the accepted end takes the active end's offer, or releases it. */
static __always_inline void short_path_passive(struct bpf_sock_ops *skops, struct short_end *end)
{
	const struct ml_pod *peer_pod = NULL;
	struct ml_short_offer *offer;
	struct ml_short_key self, peer;
	__u32 offered, roles = 0;
	__u64 peer_netns;

	peer_netns = peer_netns_of(end, &peer_pod);
	if (!peer_netns)
		return;
	peer = short_key_of(peer_netns, &end->remote, &end->local, end->remote_port,
			    end->local_port);
	offer = bpf_map_lookup_elem(&ml_short_offers, &peer);
	if (!offer)
		return; /* the active end is not on the short path */
	offered = offer->roles;
	bpf_map_delete_elem(&ml_short_offers, &peer);

	if (end->pod->flags & ML_POD_SHORT_PATH) {
		int proxy = socket_is_proxy(skops, end->pod);

		if ((offered & ML_SHORT_TX) && proxy)
			roles |= ML_SHORT_RX;
		/* An active end in ml_short_rx is the peer's proxy: a reader we may feed. */
		if ((offered & ML_SHORT_RX) && (proxy || (end->pod->flags & ML_POD_SHORT_PATH_APP)))
			roles |= ML_SHORT_TX;
	}
	if (roles) {
		self = short_key_of(end->netns_cookie, &end->local, &end->remote, end->local_port,
				    end->remote_port);
		roles = join_short_path(skops, &self, &peer, roles);
		/* The active end got its wait at the connect (sockops.bpf.c). */
		if (roles & ML_SHORT_TX)
			shorten_retransmission_wait(skops);
	}
	if ((offered & ML_SHORT_TX) && !(roles & ML_SHORT_RX)) {
		/*
		 * Nobody will receive the active end's messages. A sender only can
		 * leave its map now, before its first send; one that also receives
		 * must stay (leaving would drop what it has not read yet) and sends
		 * over TCP once its first message finds no peer.
		 */
		count_event(ML_CNT_SHORT_UNPAIRED);
		if (offered == ML_SHORT_TX && !bpf_map_delete_elem(&ml_short_tx, &peer))
			count_event(ML_CNT_SHORT_EVICTED);
	}
}

/*
 * RTT_CB of a sender only: an ACK of its own data means sk_msg has sent it back
 * to TCP (handed-over messages are never ACKed). Leaving the map gives it the
 * kernel's own sendmsg again.
 */
static __always_inline void short_path_on_ack(struct bpf_sock_ops *skops,
					      const struct short_end *end)
{
	struct ml_short_sock *state;
	struct ml_short_key self;
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return;
	state = bpf_sk_storage_get(&ml_short_socks, sk, 0, 0);
	if (!state || state->state != ML_SHORT_PASSING)
		return;
	if (state->roles == ML_SHORT_TX) {
		self = short_key_of(end->netns_cookie, &end->local, &end->remote, end->local_port,
				    end->remote_port);
		if (!bpf_map_delete_elem(&ml_short_tx, &self))
			count_event(ML_CNT_SHORT_EVICTED);
	}
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_RTT_CB_FLAG);
}

#endif /* MESHLANE_SHORTPATH_H */

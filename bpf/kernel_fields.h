/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fields of the kernel's own structs that meshlane reads, for CO-RE: each
 * struct names only those fields, and libbpf finds their offsets in the running
 * kernel's BTF at load (the ___ml suffix is dropped when matching). One
 * definition per struct, whichever program reads it.
 */
#ifndef MESHLANE_KERNEL_FIELDS_H
#define MESHLANE_KERNEL_FIELDS_H

#include <linux/types.h>

/* struct sock */
struct sock___ml {
	struct {
		struct {
			int counter;
		} rmem_alloc; /* what the socket holds unread, handed-over messages too */
	} sk_backlog;
	int sk_rcvbuf;
	struct {
		__u32 val;
	} sk_uid; /* the owner: an accepted socket inherits its listener's */
} __attribute__((preserve_access_index));

/* struct tcp_sock */
struct tcp_sock___ml {
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 snd_una;
	__u32 write_seq;
} __attribute__((preserve_access_index));

/* struct sk_msg */
struct sk_msg___ml {
	void *sk_redir; /* the socket bpf_msg_redirect_hash chose */
} __attribute__((preserve_access_index));

#endif /* MESHLANE_KERNEL_FIELDS_H */

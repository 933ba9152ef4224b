/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Loads from and stores to context and socket pointers in exactly one instruction.
 *
 * The verifier only accepts `*(u32 *)(ptr + constant)` on these pointers. When
 * several neighbouring fields are read (src_ip4, src_ip6[0..3], ...) clang may
 * compute `ptr + offset` once and load relative to it, which the verifier
 * rejects ("pointer arithmetic on sock prohibited"). The asm pins the form.
 */
#ifndef MESHLANE_CTX_ACCESS_H
#define MESHLANE_CTX_ACCESS_H

#include <linux/types.h>

#define READ_FIELD_U32(ptr, type, field)                                        \
	({                                                                      \
		__u32 __value;                                                  \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                           \
			     : "=r"(__value)                                    \
			     : "r"(ptr), "i"(__builtin_offsetof(type, field))); \
		__value;                                                        \
	})

/* The four words of an IPv6 address field (src_ip6, user_ip6, ...), each loaded
 * on its own as above. */
#define READ_FIELD_IP6(ptr, type, field, words)                   \
	do {                                                      \
		(words)[0] = READ_FIELD_U32(ptr, type, field[0]); \
		(words)[1] = READ_FIELD_U32(ptr, type, field[1]); \
		(words)[2] = READ_FIELD_U32(ptr, type, field[2]); \
		(words)[3] = READ_FIELD_U32(ptr, type, field[3]); \
	} while (0)

/*
 * Stores to neighbouring 32-bit context fields (optlen, retval) must stay two
 * 32-bit stores: clang merges them into one 64-bit store otherwise, which the
 * verifier refuses ("invalid bpf_context access").
 */
#define WRITE_FIELD_U32(ptr, type, field, value)                                           \
	asm volatile("*(u32 *)(%0 + %1) = %2"                                              \
		     :                                                                     \
		     : "r"(ptr), "i"(__builtin_offsetof(type, field)), "r"((__u32)(value)) \
		     : "memory")

#endif /* MESHLANE_CTX_ACCESS_H */

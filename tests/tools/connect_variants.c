// connect-variants: the ways a TCP client can reach a server besides a plain
// connect(2), for tests/socket_variants.rs. Each variant makes one connection (two
// for reconnect), sends TEXT and a newline, reads one reply line (tests/tools/probe.py
// serve answers with a JSON line) and prints one JSON line:
//   {"ok":true,"reply":"<the line>","peer":"ip:port","local":"ip:port"}
//   {"ok":false,"error":"ECONNREFUSED","step":"connect"}
// peer is getpeername's answer, which meshlane restores to the original destination.
// The test harness builds it with: gcc -O2 -Wall -Wextra -Werror (no liburing: the
// io_uring ring is set up with the raw system calls).
//
//   connect-variants VARIANT --to IP:PORT [--then IP:PORT] [--send TEXT]
//
// VARIANT:
//   plain           socket, connect, send
//   tfo-sendto      TCP Fast Open: sendto(MSG_FASTOPEN) connects and sends at once
//   tfo-connect     TCP Fast Open: TCP_FASTOPEN_CONNECT, then connect and send
//   mptcp           socket(IPPROTO_MPTCP), connect, send
//   io-uring        the connect is an io_uring IORING_OP_CONNECT
//   nonblock-retry  O_NONBLOCK connect (EINPROGRESS), retried until EISCONN
//   reconnect       connect to --to, exchange, connect(AF_UNSPEC) to disconnect,
//                   then connect the same socket to --then and exchange again; prints
//                   {"first":{...},"second":{...}}
//   refused-then    connect to --to (expected to fail), then the same socket to --then;
//                   prints {"first":{...},"second":{...}}
//   omem-full       first uses up the socket's option memory (net.core.optmem_max)
//                   with TCP MD5 keys for unrelated addresses, until the kernel
//                   refuses one (ENOMEM), then connects: nothing more can be
//                   charged to the socket, BPF socket storage included
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sockaddr_text.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

#define TIMEOUT_MS 5000

struct target {
	struct sockaddr_storage addr;
	socklen_t len;
};

/* One connection's outcome, printed as a JSON object. */
struct outcome {
	int ok;
	const char *step; /* where it failed */
	int err;
	char reply[512];
	char peer[80];
	char local[80];
};

static void die(const char *message)
{
	fprintf(stderr, "connect-variants: %s\n", message);
	exit(2);
}

static void parse_target(const char *text, struct target *target)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	size_t host_len;
	long port;

	if (!colon)
		die("an address is IP:PORT or [IP6]:PORT");
	host_len = (size_t)(colon - text);
	if (text[0] == '[') {
		text++;
		host_len -= 2;
	}
	if (host_len >= sizeof(host))
		die("address too long");
	memcpy(host, text, host_len);
	host[host_len] = '\0';
	port = strtol(colon + 1, NULL, 10);
	target->len = parse_numeric_addr(host, (uint16_t)port, &target->addr);
	if (!target->len)
		die("bad IP address");
}

static void fail(struct outcome *outcome, const char *step, int err)
{
	outcome->ok = 0;
	outcome->step = step;
	outcome->err = err;
}

static int wait_for(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int ready = poll(&pfd, 1, TIMEOUT_MS);

	if (ready < 0)
		return errno;
	return ready == 0 ? ETIMEDOUT : 0;
}

/*
 * After the connection is up: (send TEXT unless already sent), read the reply line,
 * note both ends. The socket is blocking here.
 */
static void exchange(int fd, const char *text, int already_sent, struct outcome *outcome)
{
	struct sockaddr_storage addr;
	socklen_t len;
	size_t used = 0;
	char line[512];

	if (!already_sent) {
		snprintf(line, sizeof(line), "%s\n", text);
		if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0)
			return fail(outcome, "send", errno);
	}
	while (used < sizeof(outcome->reply) - 1) {
		ssize_t got;
		int err = wait_for(fd, POLLIN);

		if (err)
			return fail(outcome, "recv", err);
		got = recv(fd, outcome->reply + used, 1, 0);
		if (got < 0)
			return fail(outcome, "recv", errno);
		if (got == 0 || outcome->reply[used] == '\n')
			break;
		used++;
	}
	outcome->reply[used] = '\0';
	len = sizeof(addr);
	if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0)
		format_addr(&addr, outcome->peer, sizeof(outcome->peer));
	len = sizeof(addr);
	if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
		format_addr(&addr, outcome->local, sizeof(outcome->local));
	outcome->ok = 1;
}

static int tcp_socket(const struct target *target, int protocol)
{
	return socket(target->addr.ss_family, SOCK_STREAM, protocol);
}

static void run_connect(int fd, const struct target *target, const char *text,
			struct outcome *outcome)
{
	if (connect(fd, (const struct sockaddr *)&target->addr, target->len))
		return fail(outcome, "connect", errno);
	exchange(fd, text, 0, outcome);
}

static void run_tfo_sendto(int fd, const struct target *target, const char *text,
			   struct outcome *outcome)
{
	char line[512];

	snprintf(line, sizeof(line), "%s\n", text);
	if (sendto(fd, line, strlen(line), MSG_FASTOPEN | MSG_NOSIGNAL,
		   (const struct sockaddr *)&target->addr, target->len) < 0)
		return fail(outcome, "sendto", errno);
	exchange(fd, text, 1, outcome);
}

static void run_tfo_connect(int fd, const struct target *target, const char *text,
			    struct outcome *outcome)
{
	int on = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &on, sizeof(on)))
		return fail(outcome, "setsockopt", errno);
	run_connect(fd, target, text, outcome);
}

/* TCP MD5 keys for 198.18.x.y (never a peer here) until the socket's budget is spent. */
static void run_omem_full(int fd, const struct target *target, const char *text,
			  struct outcome *outcome)
{
	struct tcp_md5sig key;
	int added;

	for (added = 0; added < 100000; added++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&key.tcpm_addr;

		memset(&key, 0, sizeof(key));
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(0xc6120000u | (unsigned)added);
		key.tcpm_keylen = 8;
		memcpy(key.tcpm_key, "meshlane", 8);
		if (setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, &key, sizeof(key)) == 0)
			continue;
		if (errno == ENOMEM)
			break;
		return fail(outcome, "md5sig", errno);
	}
	fprintf(stderr, "connect-variants: %d MD5 keys fill the socket's option memory\n", added);
	run_connect(fd, target, text, outcome);
}

static void run_nonblock_retry(int fd, const struct target *target, const char *text,
			       struct outcome *outcome)
{
	int flags = fcntl(fd, F_GETFL);
	int attempts;

	if (fcntl(fd, F_SETFL, flags | O_NONBLOCK))
		return fail(outcome, "fcntl", errno);
	/* A retry passes the same address again, as event loops do until EISCONN. */
	for (attempts = 0; attempts < 1000; attempts++) {
		int err;

		if (connect(fd, (const struct sockaddr *)&target->addr, target->len) == 0)
			break;
		if (errno == EISCONN)
			break;
		if (errno != EINPROGRESS && errno != EALREADY)
			return fail(outcome, "connect", errno);
		err = wait_for(fd, POLLOUT);
		if (err)
			return fail(outcome, "poll", err);
	}
	if (fcntl(fd, F_SETFL, flags))
		return fail(outcome, "fcntl", errno);
	exchange(fd, text, 0, outcome);
}

/* The three rings of an io_uring instance, mapped with the raw system calls. */
struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int ring_setup(struct ring *ring)
{
	struct io_uring_params params;
	char *sq, *cq;

	memset(&params, 0, sizeof(params));
	ring->fd = (int)syscall(__NR_io_uring_setup, 4, &params);
	if (ring->fd < 0)
		return errno;
	sq = mmap(NULL, params.sq_off.array + params.sq_entries * sizeof(unsigned),
		  PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_SQ_RING);
	cq = mmap(NULL, params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe),
		  PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_CQ_RING);
	ring->sqes =
		mmap(NULL, params.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || ring->sqes == MAP_FAILED)
		return errno;
	ring->sq_tail = (unsigned *)(sq + params.sq_off.tail);
	ring->sq_mask = (unsigned *)(sq + params.sq_off.ring_mask);
	ring->sq_array = (unsigned *)(sq + params.sq_off.array);
	ring->cq_head = (unsigned *)(cq + params.cq_off.head);
	ring->cq_tail = (unsigned *)(cq + params.cq_off.tail);
	ring->cq_mask = (unsigned *)(cq + params.cq_off.ring_mask);
	ring->cqes = (struct io_uring_cqe *)(cq + params.cq_off.cqes);
	return 0;
}

static void run_io_uring(int fd, const struct target *target, const char *text,
			 struct outcome *outcome)
{
	struct io_uring_sqe *sqe;
	struct ring ring = { 0 };
	unsigned tail, head;
	int err = ring_setup(&ring);

	if (err)
		return fail(outcome, "io_uring_setup", err);
	tail = *ring.sq_tail;
	sqe = &ring.sqes[tail & *ring.sq_mask];
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_CONNECT;
	sqe->fd = fd;
	sqe->addr = (uint64_t)(uintptr_t)&target->addr;
	sqe->off = target->len; /* addr2: the address length */
	ring.sq_array[tail & *ring.sq_mask] = tail & *ring.sq_mask;
	__atomic_store_n(ring.sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, ring.fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return fail(outcome, "io_uring_enter", errno);
	head = *ring.cq_head;
	if (head == __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE))
		return fail(outcome, "io_uring_cqe", EAGAIN);
	err = ring.cqes[head & *ring.cq_mask].res;
	__atomic_store_n(ring.cq_head, head + 1, __ATOMIC_RELEASE);
	if (err < 0)
		return fail(outcome, "io_uring_connect", -err);
	exchange(fd, text, 0, outcome);
}

static void print_outcome(const struct outcome *outcome)
{
	const char *c;

	if (!outcome->ok) {
		printf("{\"ok\":false,\"error\":\"%s\",\"step\":\"%s\"}",
		       strerrorname_np(outcome->err), outcome->step);
		return;
	}
	printf("{\"ok\":true,\"reply\":\"");
	for (c = outcome->reply; *c; c++) {
		if (*c == '"' || *c == '\\')
			putchar('\\');
		if ((unsigned char)*c >= 0x20)
			putchar(*c);
	}
	printf("\",\"peer\":\"%s\",\"local\":\"%s\"}", outcome->peer, outcome->local);
}

/* reconnect and refused-then: one socket, two destinations. */
static void run_twice(const char *variant, const struct target *first, const struct target *then,
		      const char *text)
{
	struct outcome one = { 0 }, two = { 0 };
	int fd = tcp_socket(first, 0);

	if (fd < 0)
		die("socket");
	run_connect(fd, first, text, &one);
	if (!strcmp(variant, "reconnect") && one.ok) {
		struct sockaddr unspec = { .sa_family = AF_UNSPEC };

		if (connect(fd, &unspec, sizeof(unspec)))
			die("connect(AF_UNSPEC)");
	}
	run_connect(fd, then, text, &two);
	printf("{\"first\":");
	print_outcome(&one);
	printf(",\"second\":");
	print_outcome(&two);
	printf("}\n");
	close(fd);
}

int main(int argc, char **argv)
{
	struct target to = { 0 }, then = { 0 };
	const char *variant, *text = "hello";
	struct outcome outcome = { 0 };
	int have_to = 0, have_then = 0, fd, i;

	if (argc < 2)
		die("usage: connect-variants VARIANT --to IP:PORT [--then IP:PORT] [--send TEXT]");
	variant = argv[1];
	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--to")) {
			parse_target(argv[i + 1], &to);
			have_to = 1;
		} else if (!strcmp(argv[i], "--then")) {
			parse_target(argv[i + 1], &then);
			have_then = 1;
		} else if (!strcmp(argv[i], "--send")) {
			text = argv[i + 1];
		} else {
			die("unknown option");
		}
	}
	if (!have_to)
		die("--to is required");
	if (!strcmp(variant, "reconnect") || !strcmp(variant, "refused-then")) {
		if (!have_then)
			die("--then is required");
		run_twice(variant, &to, &then, text);
		return 0;
	}
	fd = tcp_socket(&to, !strcmp(variant, "mptcp") ? IPPROTO_MPTCP : 0);
	if (fd < 0) {
		fail(&outcome, "socket", errno);
	} else if (!strcmp(variant, "plain") || !strcmp(variant, "mptcp")) {
		run_connect(fd, &to, text, &outcome);
	} else if (!strcmp(variant, "tfo-sendto")) {
		run_tfo_sendto(fd, &to, text, &outcome);
	} else if (!strcmp(variant, "tfo-connect")) {
		run_tfo_connect(fd, &to, text, &outcome);
	} else if (!strcmp(variant, "omem-full")) {
		run_omem_full(fd, &to, text, &outcome);
	} else if (!strcmp(variant, "io-uring")) {
		run_io_uring(fd, &to, text, &outcome);
	} else if (!strcmp(variant, "nonblock-retry")) {
		run_nonblock_retry(fd, &to, text, &outcome);
	} else {
		die("unknown variant");
	}
	print_outcome(&outcome);
	printf("\n");
	return outcome.ok ? 0 : 1;
}

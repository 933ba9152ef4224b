// origdst-load: many captured connections at once, each checked end to end. The
// harnesses of tests/origdst_scale.rs and bench/churn.py, bench/scale.py build it with
//
//   gcc -O2 -Wall -Wextra -Werror -o origdst-load origdst_load.c
//
// proxy --name N --port P [--port P2 ...] [--local]
//     A minimal sidecar (IPv4): listens on 0.0.0.0:P for each P and serves every
//     connection from one epoll loop, so that tens of thousands stay open at once. Per
//     connection it reads the client's first line (the destination the client asked
//     for, "ip:port"), reads SO_ORIGINAL_DST of the accepted socket as Envoy does, and
//     replies "N ORIG\n" (ORIG "none" when getsockopt fails); the connection then stays
//     open until the client closes it. Prints READY when listening. SIGUSR1 prints the
//     counts as one JSON line {"name","accepted","matched","mismatched","no_original_dst",
//     "reply_failed","open"}; SIGTERM prints them and exits. The first mismatches are printed as
//     {"mismatch":EXPECTED,"got":ORIG} lines. Run it as the proxy's UID. With --local it
//     answers with the address it was reached at (getsockname) instead: an app behind
//     a real sidecar.
// client (--to IP:PORT[/NAME] ... | --count N --base IP --ports K --port-base P)
//        [--expect-name N] [--hold] [--window W] [--timeout S]
//     Connects to each destination (with --count, N distinct ones: address base + i / K,
//     port P + i % K), at most W handshakes in flight (default 256), sends the
//     destination and a newline, reads the reply line and checks that it names the
//     expected proxy (/NAME, else --expect-name) and the destination as the original one. Without
//     --hold each connection closes once checked; with --hold all stay open until every
//     one is checked, the result is printed, and SIGTERM arrives (the harness reads
//     maps and memory meanwhile). Prints one JSON line {"connections","ok","wrong_dst",
//     "wrong_name","failed","first_problem"} (before it, a {"failed_to":"ip:port"} line per
//     connection that was not right); exit 0 only when every one is ok.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SO_ORIGINAL_DST 80
#define LINE_MAX_LEN	64
#define MAX_PORTS	8
#define MAX_MISMATCHES	10

struct conn {
	int fd;
	int state; /* client: 0 connecting, 1 sent, 2 checked; proxy: 0 reading, 1 replied */
	size_t got;
	char line[LINE_MAX_LEN];
	struct sockaddr_in dst;
	const char *expect_name; /* client: who must answer (NULL: anyone) */
};

static volatile sig_atomic_t report_wanted;
static volatile sig_atomic_t stop_wanted;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		report_wanted = 1;
	else
		stop_wanted = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "origdst-load: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void format_addr(const struct sockaddr_in *addr, char *out, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof(ip));
	snprintf(out, len, "%s:%u", ip, ntohs(addr->sin_port));
}

/* "ip:port", or "ip:port/NAME" with the name of the proxy that must answer. */
static int parse_addr(char *text, struct sockaddr_in *out, const char **name)
{
	char ip[INET_ADDRSTRLEN];
	char *slash = strchr(text, '/');

	if (name)
		*name = slash ? slash + 1 : NULL;
	if (slash)
		*slash = '\0';
	const char *colon = strrchr(text, ':');

	if (!colon || (size_t)(colon - text) >= sizeof(ip))
		return -1;
	memcpy(ip, text, colon - text);
	ip[colon - text] = '\0';
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons(atoi(colon + 1));
	return inet_pton(AF_INET, ip, &out->sin_addr) == 1 ? 0 : -1;
}

/* As many descriptors as the hard limit allows: a proxy holds one per connection. */
static void raise_nofile(void)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
}

/* A growable table of connections indexed by descriptor. */
static struct conn **conns;
static size_t conns_len;

static struct conn *conn_new(int fd)
{
	if ((size_t)fd >= conns_len) {
		size_t len = conns_len ? conns_len : 1024;

		while (len <= (size_t)fd)
			len *= 2;
		conns = realloc(conns, len * sizeof(*conns));
		if (!conns)
			die("realloc");
		memset(conns + conns_len, 0, (len - conns_len) * sizeof(*conns));
		conns_len = len;
	}
	conns[fd] = calloc(1, sizeof(struct conn));
	if (!conns[fd])
		die("calloc");
	conns[fd]->fd = fd;
	return conns[fd];
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	conns[c->fd] = NULL;
	free(c);
}

/* Reads into c->line up to a newline: 1 when the line is complete, 0 for more, -1 EOF. */
static int read_line(struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->line + c->got, sizeof(c->line) - 1 - c->got);

		if (n == 0)
			return -1;
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		c->got += n;
		c->line[c->got] = '\0';
		char *nl = strchr(c->line, '\n');

		if (nl) {
			*nl = '\0';
			return 1;
		}
		if (c->got == sizeof(c->line) - 1)
			return 1;
	}
}

/* --- proxy ------------------------------------------------------------------------ */

struct proxy_counts {
	unsigned long accepted, matched, mismatched, no_orig, reply_failed, open;
};

static void proxy_report(const char *name, const struct proxy_counts *k)
{
	printf("{\"name\":\"%s\",\"accepted\":%lu,\"matched\":%lu,\"mismatched\":%lu,"
	       "\"no_original_dst\":%lu,\"reply_failed\":%lu,\"open\":%lu}\n",
	       name, k->accepted, k->matched, k->mismatched, k->no_orig, k->reply_failed, k->open);
	fflush(stdout);
}

/* An app behind a real sidecar answers with the address it was reached at. */
static int answer_local;

static void proxy_answer(struct conn *c, const char *name, struct proxy_counts *k)
{
	struct sockaddr_in orig;
	socklen_t len = sizeof(orig);
	char text[LINE_MAX_LEN] = "none";
	char reply[2 * LINE_MAX_LEN];

	int found = answer_local ? getsockname(c->fd, (struct sockaddr *)&orig, &len)
				 : getsockopt(c->fd, SOL_IP, SO_ORIGINAL_DST, &orig, &len);

	if (found == 0) {
		format_addr(&orig, text, sizeof(text));
		if (strcmp(text, c->line) == 0) {
			k->matched++;
		} else {
			if (k->mismatched < MAX_MISMATCHES)
				printf("{\"mismatch\":\"%s\",\"got\":\"%s\"}\n", c->line, text);
			k->mismatched++;
		}
	} else {
		k->no_orig++;
	}
	int n = snprintf(reply, sizeof(reply), "%s %s\n", name, text);

	/* A reply this short fits an empty send buffer; the client counts a lost one. */
	if (write(c->fd, reply, n) != n)
		k->reply_failed++;
	c->state = 1;
}

static int run_proxy(int argc, char **argv)
{
	const char *name = "proxy";
	int ports[MAX_PORTS], nports = 0;
	struct proxy_counts k = { 0 };

	for (int i = 0; i < argc; i += 2) {
		if (strcmp(argv[i], "--local") == 0)
			answer_local = 1, i--;
		else if (i + 1 >= argc)
			break;
		else if (strcmp(argv[i], "--name") == 0)
			name = argv[i + 1];
		else if (strcmp(argv[i], "--port") == 0 && nports < MAX_PORTS)
			ports[nports++] = atoi(argv[i + 1]);
	}
	if (nports == 0) {
		fprintf(stderr, "origdst-load proxy: --port is required\n");
		return 2;
	}
	raise_nofile();
	int ep = epoll_create1(0);
	int listeners[MAX_PORTS];

	for (int i = 0; i < nports; i++) {
		struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(ports[i]) };
		int one = 1;

		listeners[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		setsockopt(listeners[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(listeners[i], (struct sockaddr *)&addr, sizeof(addr)) < 0)
			die("bind");
		if (listen(listeners[i], 4096) < 0)
			die("listen");
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = -1 - i };

		epoll_ctl(ep, EPOLL_CTL_ADD, listeners[i], &ev);
	}
	printf("READY\n");
	fflush(stdout);

	struct epoll_event events[256];

	while (!stop_wanted) {
		if (report_wanted) {
			report_wanted = 0;
			proxy_report(name, &k);
		}
		int n = epoll_wait(ep, events, 256, 200);

		for (int e = 0; e < n; e++) {
			int fd = events[e].data.fd;

			if (fd < 0) {
				int conn_fd;

				while ((conn_fd = accept4(listeners[-1 - fd], NULL, NULL,
							  SOCK_NONBLOCK)) >= 0) {
					struct epoll_event ev = { .events = EPOLLIN,
								  .data.fd = conn_fd };

					conn_new(conn_fd);
					epoll_ctl(ep, EPOLL_CTL_ADD, conn_fd, &ev);
					k.accepted++;
					k.open++;
				}
				continue;
			}
			struct conn *c = conns[fd];

			if (!c)
				continue;
			if (c->state == 0) {
				int r = read_line(c);

				if (r == 1)
					proxy_answer(c, name, &k);
				if (r >= 0)
					continue;
			} else {
				char sink[256];
				ssize_t got = read(fd, sink, sizeof(sink));

				if (got > 0 || (got < 0 && errno == EAGAIN))
					continue;
			}
			k.open--;
			conn_close(ep, c);
		}
	}
	proxy_report(name, &k);
	return 0;
}

/* --- client ----------------------------------------------------------------------- */

struct client_counts {
	unsigned long ok, wrong_dst, wrong_name, failed;
	char first_problem[160];
};

/* One connection that was not right: counted, its destination printed on a line of its own. */
static void client_problem(struct client_counts *k, unsigned long *which,
			   const struct sockaddr_in *dst, const char *fmt, const char *a,
			   const char *b)
{
	char text[LINE_MAX_LEN];

	(*which)++;
	if (!k->first_problem[0])
		snprintf(k->first_problem, sizeof(k->first_problem), fmt, a, b);
	format_addr(dst, text, sizeof(text));
	printf("{\"failed_to\":\"%s\"}\n", text);
}

/* The reply "NAME ORIG" against the expected proxy name and destination. */
static void client_check(struct conn *c, struct client_counts *k)
{
	char want[LINE_MAX_LEN];
	char *space = strchr(c->line, ' ');

	format_addr(&c->dst, want, sizeof(want));
	if (!space) {
		client_problem(k, &k->failed, &c->dst, "reply '%s' for %s", c->line, want);
		return;
	}
	*space = '\0';
	if (c->expect_name && strcmp(c->line, c->expect_name) != 0)
		client_problem(k, &k->wrong_name, &c->dst, "reached '%s' for %s", c->line, want);
	else if (strcmp(space + 1, want) != 0)
		client_problem(k, &k->wrong_dst, &c->dst, "original destination %s for %s",
			       space + 1, want);
	else
		k->ok++;
}

static int run_client(int argc, char **argv)
{
	const char *expect_name = NULL;
	int hold = 0, window = 256, timeout_s = 120;
	unsigned long count = 0, ports_per_ip = 1;
	struct sockaddr_in base = { .sin_family = AF_INET };
	struct sockaddr_in *dsts = calloc(argc, sizeof(*dsts));
	const char **names = calloc(argc, sizeof(*names));
	unsigned long ndst = 0;

	for (int i = 0; i < argc; i++) {
		const char *value = i + 1 < argc ? argv[i + 1] : "";

		if (strcmp(argv[i], "--hold") == 0)
			hold = 1;
		else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc &&
			 parse_addr(argv[i + 1], &dsts[ndst], &names[ndst]) == 0)
			ndst++, i++;
		else if (strcmp(argv[i], "--count") == 0)
			count = strtoul(value, NULL, 10), i++;
		else if (strcmp(argv[i], "--base") == 0)
			inet_pton(AF_INET, value, &base.sin_addr), i++;
		else if (strcmp(argv[i], "--ports") == 0)
			ports_per_ip = strtoul(value, NULL, 10), i++;
		else if (strcmp(argv[i], "--port-base") == 0)
			base.sin_port = htons(atoi(value)), i++;
		else if (strcmp(argv[i], "--expect-name") == 0)
			expect_name = value, i++;
		else if (strcmp(argv[i], "--window") == 0)
			window = atoi(value), i++;
		else if (strcmp(argv[i], "--timeout") == 0)
			timeout_s = atoi(value), i++;
		else {
			fprintf(stderr, "origdst-load client: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	unsigned long total = count ? count : ndst;

	if (total == 0 || ports_per_ip == 0) {
		fprintf(stderr, "origdst-load client: no destinations\n");
		return 2;
	}
	raise_nofile();
	int ep = epoll_create1(0);
	struct client_counts k = { 0 };
	unsigned long started = 0, done = 0;
	int in_flight = 0;
	time_t deadline = time(NULL) + timeout_s;
	struct epoll_event events[256];

	while (done < total && time(NULL) < deadline) {
		while (started < total && in_flight < window) {
			struct sockaddr_in dst = count ? base : dsts[started];

			if (count) {
				dst.sin_addr.s_addr =
					htonl(ntohl(base.sin_addr.s_addr) + started / ports_per_ip);
				dst.sin_port = htons(ntohs(base.sin_port) + started % ports_per_ip);
			}
			started++;
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

			if (fd < 0) {
				client_problem(&k, &k.failed, &dst, "socket: %s%s", strerror(errno),
					       "");
				done++;
				continue;
			}
			struct conn *c = conn_new(fd);

			c->dst = dst;
			c->expect_name =
				count || !names[started - 1] ? expect_name : names[started - 1];
			if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
			    errno != EINPROGRESS) {
				client_problem(&k, &k.failed, &dst, "connect: %s%s",
					       strerror(errno), "");
				close(fd);
				conns[fd] = NULL;
				free(c);
				done++;
				continue;
			}
			struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.fd = fd };

			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			in_flight++;
		}
		int n = epoll_wait(ep, events, 256, 200);

		for (int e = 0; e < n; e++) {
			struct conn *c = conns[events[e].data.fd];

			if (!c || c->state == 2)
				continue;
			int finished = 0;

			if (c->state == 0) {
				int err = 0;
				socklen_t len = sizeof(err);
				char text[LINE_MAX_LEN + 1];

				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err) {
					client_problem(&k, &k.failed, &c->dst, "connect: %s%s",
						       strerror(err), "");
					finished = 1;
				} else {
					format_addr(&c->dst, text, sizeof(text) - 1);
					strcat(text, "\n");
					if (write(c->fd, text, strlen(text)) !=
					    (ssize_t)strlen(text)) {
						client_problem(&k, &k.failed, &c->dst, "send: %s%s",
							       strerror(errno), "");
						finished = 1;
					} else {
						c->state = 1;
						struct epoll_event ev = { .events = EPOLLIN,
									  .data.fd = c->fd };

						epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
					}
				}
			} else {
				int r = read_line(c);

				if (r == 0)
					continue;
				if (r < 0)
					client_problem(&k, &k.failed, &c->dst,
						       "closed before a reply%s%s", "", "");
				else
					client_check(c, &k);
				finished = 1;
			}
			if (!finished)
				continue;
			done++;
			in_flight--;
			if (hold) {
				c->state = 2;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			} else {
				conn_close(ep, c);
			}
		}
	}
	if (done < total) {
		if (!k.first_problem[0])
			snprintf(k.first_problem, sizeof(k.first_problem),
				 "timed out with %lu connections unanswered", total - done);
		k.failed += total - done;
	}
	printf("{\"connections\":%lu,\"ok\":%lu,\"wrong_dst\":%lu,\"wrong_name\":%lu,"
	       "\"failed\":%lu,\"first_problem\":\"%s\"}\n",
	       total, k.ok, k.wrong_dst, k.wrong_name, k.failed, k.first_problem);
	fflush(stdout);
	/* Held connections stay open until the harness has read its figures. */
	while (hold && !stop_wanted)
		pause();
	return k.ok == total ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "proxy") == 0)
		return run_proxy(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return run_client(argc - 2, argv + 2);
	fprintf(stderr, "usage: origdst-load proxy|client ... (see the source's header)\n");
	return 2;
}

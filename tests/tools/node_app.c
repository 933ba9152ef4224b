// node-app: the application of the containerd test node's pods (image meshlane.test/app:1).
// One static binary (the image has no libc, no shell), one subcommand per role; every
// result is one JSON line on stdout, flushed at once, so that a test reading a
// container's log can parse it. Addresses print as "ip:port" or "[ip6]:port", and an
// IPv4-mapped IPv6 address prints as the IPv4 one (as tests/tools/probe.py does).
//
//   gcc -static -O2 -Wall -Wextra -Werror -o node-app node_app.c
//
// serve --port P [--name N] [--host ADDR] [--original-dst]
//     TCP server, IPv4 and IPv6 on the wildcard by default (one AF_INET6 socket with
//     IPV6_V6ONLY=0; IPv4 only when the netns has no IPv6). Prints READY when
//     listening, and {"event":"accept",...} per connection. Per connection: reads the
//     client's first line (a client speaks first, as proxies that sniff the protocol
//     expect), replies {"name","peer","local","got"[,"original_dst"]}, then echoes
//     every byte until EOF (an echo server for long-lived streams).
// call --to HOST:PORT [--send TEXT] [--timeout S]
//     One connection: sends TEXT and a newline, reads the server's JSON line; prints
//     {"ok":true,"reply":{...},"local","peer"} (peer: getpeername's answer, which
//     meshlane restores to the original destination) or
//     {"ok":false,"error":"ECONNREFUSED","message":...}. Exit 0 only when ok.
// stream --to HOST:PORT --bytes N [--chunk K] [--rate BYTES_PER_S] [--timeout S]
//        [--max-gap S]
//     A long-lived connection to `serve`: sends N bytes of a deterministic pattern and
//     checks the echo byte by byte. Prints {"event":"connected",...}, a progress line
//     each second, {"event":"gap",...} whenever the echo stopped for more than
//     --max-gap seconds (default 2) while bytes were outstanding, and finally
//     {"ok","sent","verified","seconds","max_gap_s"[,"error",...]}. ok needs every
//     byte back in order and no gap; a mismatch names the offset.
// istio-validation [--ipv6] [--timeout S]
//     What Istio's istio-validation init container checks when a CNI plugin does the
//     capture (the same steps as tests/tools/probe.py): listen on 127.0.0.1:15001 and
//     :15006, connect from 127.0.0.1 to 127.0.0.6:15002 (::1 / ::6 with --ipv6),
//     accept on whichever listener got it, and read SO_ORIGINAL_DST, which must name
//     port 15002. Prints {"ok","listener","original_dst","error"}; exit 0 only when ok.
//     Istio's init container runs it as the proxy's UID (1337): so should a test.
// info
//     What the process runs as: {"uid","gid","groups","cwd","hostname","argv","env"}
//     (checks that an image's User, WorkingDir and Env, or a pod's securityContext,
//     arrived).
// original-dst-proxy --port P [--host ADDR] [--name N]
//     A minimal sidecar: accepts, reads SO_ORIGINAL_DST of the accepted socket
//     (SOL_IP 80, or SOL_IPV6 80 for IPv6 peers), connects there and relays both ways.
//     Prints READY, then {"event":"proxy","peer","local","original_dst",...} per
//     connection. Run it as the proxy UID, or its own connects are captured again
//     (serve and the proxy keep at most 256 connections, which bounds such a loop).

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pid1.h"
#include "sockaddr_text.h"

#define SO_ORIGINAL_DST_OPT 80 // SOL_IP: SO_ORIGINAL_DST; SOL_IPV6: IP6T_SO_ORIGINAL_DST
#define LINE_MAX_BYTES	    4096
#define ADDR_TEXT	    (INET6_ADDRSTRLEN + 16)
#define FIRST_LINE_SECONDS  30 // a client that never speaks does not keep a server child

// --- output ------------------------------------------------------------------------

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			fputs("node-app: out of memory\n", stderr);
			_exit(3);
		}
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

// A JSON string. Bytes >= 0x80 are escaped as \u00XX (read as Latin-1), so that the
// line stays valid UTF-8 whatever a peer sent.
static void buf_json_str(struct buf *b, const char *s, size_t n)
{
	buf_str(b, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			buf_add(b, esc, 2);
		} else if (c == '\n') {
			buf_str(b, "\\n");
		} else if (c < 0x20 || c >= 0x7f) {
			buf_printf(b, "\\u%04x", c);
		} else {
			buf_add(b, (const char *)&c, 1);
		}
	}
	buf_str(b, "\"");
}

static void buf_key_str(struct buf *b, const char *key, const char *value)
{
	buf_printf(b, "\"%s\":", key);
	if (value)
		buf_json_str(b, value, strlen(value));
	else
		buf_str(b, "null");
}

// Prints the object (without its braces) as one line and flushes: stdout is a pipe
// or a log file in a container, fully buffered otherwise.
static void emit(struct buf *b)
{
	printf("{%s}\n", b->p ? b->p : "");
	fflush(stdout);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

#define ERRNO_NAME(e) \
	{             \
		e, #e \
	}
static const struct {
	int err;
	const char *name;
} errno_names[] = {
	ERRNO_NAME(ECONNREFUSED), ERRNO_NAME(ECONNRESET),    ERRNO_NAME(ECONNABORTED),
	ERRNO_NAME(ETIMEDOUT),	  ERRNO_NAME(EHOSTUNREACH),  ERRNO_NAME(ENETUNREACH),
	ERRNO_NAME(EADDRINUSE),	  ERRNO_NAME(EADDRNOTAVAIL), ERRNO_NAME(EAFNOSUPPORT),
	ERRNO_NAME(EACCES),	  ERRNO_NAME(EPERM),	     ERRNO_NAME(ENOENT),
	ERRNO_NAME(ENOPROTOOPT),  ERRNO_NAME(EINVAL),	     ERRNO_NAME(EPIPE),
	ERRNO_NAME(ENOTCONN),	  ERRNO_NAME(EAGAIN),	     ERRNO_NAME(EINTR),
	ERRNO_NAME(EMFILE),	  ERRNO_NAME(ENOBUFS),
};

static const char *errno_name(int err)
{
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	return NULL;
}

// "error":"ECONNREFUSED","message":"Connection refused" (an unnamed errno: "E<n>").
static void buf_errno(struct buf *b, int err)
{
	const char *name = errno_name(err);
	char fallback[16];

	if (!name) {
		snprintf(fallback, sizeof(fallback), "E%d", err);
		name = fallback;
	}
	buf_key_str(b, "error", name);
	buf_str(b, ",");
	buf_key_str(b, "message", strerror(err));
}

static void buf_error(struct buf *b, const char *error, const char *message)
{
	buf_key_str(b, "error", error);
	buf_str(b, ",");
	buf_key_str(b, "message", message);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("node-app: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (node-app --help)\n", stderr);
	exit(2);
}

// --- JSON validation (a reply is embedded as is only when it is JSON) --------------

static const char *json_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

static const char *json_value(const char *p, const char *end, int depth);

static const char *json_string(const char *p, const char *end)
{
	if (p >= end || *p != '"')
		return NULL;
	for (p++; p < end; p++) {
		if (*p == '"')
			return p + 1;
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			if (++p >= end)
				return NULL;
			if (*p == 'u') {
				for (int i = 0; i < 4; i++)
					if (++p >= end || !strchr("0123456789abcdefABCDEF", *p))
						return NULL;
			} else if (!strchr("\"\\/bfnrt", *p)) {
				return NULL;
			}
		}
	}
	return NULL;
}

// One or more decimal digits: the end of them, or NULL.
static const char *json_digits(const char *p, const char *end)
{
	const char *start = p;

	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p == start ? NULL : p;
}

static const char *json_number(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	p = json_digits(p, end);
	if (p && p < end && *p == '.')
		p = json_digits(p + 1, end);
	if (p && p < end && (*p == 'e' || *p == 'E')) {
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		p = json_digits(p, end);
	}
	return p;
}

static const char *json_items(const char *p, const char *end, int depth, char close, int keyed)
{
	p = json_ws(p + 1, end);
	if (p < end && *p == close)
		return p + 1;
	for (;;) {
		if (keyed) {
			p = json_string(json_ws(p, end), end);
			if (!p)
				return NULL;
			p = json_ws(p, end);
			if (p >= end || *p != ':')
				return NULL;
			p++;
		}
		p = json_value(p, end, depth + 1);
		if (!p)
			return NULL;
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		if (p < end && *p == close)
			return p + 1;
		return NULL;
	}
}

static const char *json_value(const char *p, const char *end, int depth)
{
	if (depth > 64)
		return NULL;
	p = json_ws(p, end);
	if (p >= end)
		return NULL;
	if (*p == '{')
		p = json_items(p, end, depth, '}', 1);
	else if (*p == '[')
		p = json_items(p, end, depth, ']', 0);
	else if (*p == '"')
		p = json_string(p, end);
	else if (end - p >= 4 && (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)))
		p += 4;
	else if (end - p >= 5 && !strncmp(p, "false", 5))
		p += 5;
	else
		p = json_number(p, end);
	return p ? json_ws(p, end) : NULL;
}

static int json_valid(const char *s, size_t n)
{
	return json_value(s, s + n, 0) == s + n;
}

// --- addresses ---------------------------------------------------------------------

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void buf_sock_addrs(struct buf *b, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char text[ADDR_TEXT];

	len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		format_addr(&ss, text, sizeof(text));
		buf_key_str(b, "peer", text);
	} else {
		buf_key_str(b, "peer", NULL);
	}
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		format_addr(&ss, text, sizeof(text));
		buf_str(b, ",");
		buf_key_str(b, "local", text);
	} else {
		buf_str(b, ",\"local\":null");
	}
}

// "host:port" or "[ip6]:port" into host and port; 0 on success.
static int split_host_port(const char *text, char *host, size_t host_len, unsigned *port)
{
	const char *colon;
	size_t n;
	char *endp;
	unsigned long value;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return -1;
		n = (size_t)(close - text - 1);
		colon = close + 1;
		text++;
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return -1;
		n = (size_t)(colon - text);
	}
	if (n == 0 || n >= host_len)
		return -1;
	memcpy(host, text, n);
	host[n] = 0;
	value = strtoul(colon + 1, &endp, 10);
	if (*endp || colon[1] == 0 || value > 65535)
		return -1;
	*port = (unsigned)value;
	return 0;
}

static int parse_port(const char *text)
{
	char *endp;
	long value = strtol(text, &endp, 10);

	if (*endp || !*text || value < 0 || value > 65535)
		die_usage("bad port %s", text);
	return (int)value;
}

static double parse_seconds(const char *text)
{
	char *endp;
	double value = strtod(text, &endp);

	if (*endp || !*text || value < 0)
		die_usage("bad number of seconds %s", text);
	return value;
}

static unsigned long long parse_count(const char *text)
{
	char *endp;
	unsigned long long value = strtoull(text, &endp, 10);

	if (*endp || !*text || text[0] == '-')
		die_usage("bad number %s", text);
	return value;
}

// Numeric addresses without NSS; names through getaddrinfo (the static glibc resolves
// with /etc/hosts and DNS on its own). Returns the number of addresses (<= max).
static int resolve(const char *host, unsigned port, struct sockaddr_storage *out, int max,
		   const char **error)
{
	struct addrinfo hints, *res, *ai;
	int n = 0, rc;

	if (parse_numeric_addr(host, port, out))
		return 1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		*error = gai_strerror(rc);
		return 0;
	}
	for (ai = res; ai && n < max; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		memset(&out[n], 0, sizeof(out[n]));
		memcpy(&out[n], ai->ai_addr, ai->ai_addrlen);
		if (ai->ai_family == AF_INET)
			((struct sockaddr_in *)&out[n])->sin_port = htons(port);
		else
			((struct sockaddr_in6 *)&out[n])->sin6_port = htons(port);
		n++;
	}
	freeaddrinfo(res);
	if (n == 0)
		*error = "no IPv4 or IPv6 address";
	return n;
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static int set_nonblocking(int fd, int on)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -1;
	return fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

static int ms_until(double deadline)
{
	double left = deadline - now_s();

	return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

// Connects with a deadline; -1 with *err = errno, or ETIME for the deadline.
static int connect_deadline(const struct sockaddr_storage *to, double deadline, int *err)
{
	int fd = socket(to->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct pollfd pfd;
	socklen_t len = sizeof(*err);

	if (fd < 0) {
		*err = errno;
		return -1;
	}
	set_nonblocking(fd, 1);
	if (connect(fd, (const struct sockaddr *)to, addr_len(to)) == 0)
		goto connected;
	if (errno != EINPROGRESS) {
		*err = errno;
		close(fd);
		return -1;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	for (;;) {
		int rc = poll(&pfd, 1, ms_until(deadline));
		if (rc > 0)
			break;
		if (rc == 0 || errno != EINTR) {
			*err = rc == 0 ? ETIME : errno;
			close(fd);
			return -1;
		}
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) < 0 || *err) {
		if (!*err)
			*err = errno;
		close(fd);
		return -1;
	}
connected:
	set_nonblocking(fd, 0);
	return fd;
}

static void buf_connect_error(struct buf *b, int err)
{
	if (err == ETIME)
		buf_error(b, "timeout", "no answer before the deadline");
	else
		buf_errno(b, err);
}

// Reads up to and without the first newline (at most LINE_MAX_BYTES). *extra gets
// what came after it. Returns the line length, -1 on error (errno set; ETIME at the
// deadline), -2 on EOF before any newline (the bytes read are still in line).
static ssize_t read_line(int fd, char *line, size_t *line_len, char *extra, size_t *extra_len,
			 double deadline)
{
	size_t got = 0;

	*extra_len = 0;
	*line_len = 0;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		char *nl;
		int rc = poll(&pfd, 1, deadline > 0 ? ms_until(deadline) : -1);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -1;
		if (rc == 0) {
			errno = ETIME;
			return -1;
		}
		n = recv(fd, line + got, LINE_MAX_BYTES - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			*line_len = got;
			return -2;
		}
		nl = memchr(line + got, '\n', (size_t)n);
		got += (size_t)n;
		if (nl) {
			*line_len = (size_t)(nl - line);
			*extra_len = got - *line_len - 1;
			memcpy(extra, nl + 1, *extra_len);
			return (ssize_t)*line_len;
		}
		if (got == LINE_MAX_BYTES) {
			*line_len = got;
			return (ssize_t)got;
		}
	}
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

// SO_ORIGINAL_DST as a proxy asks for it: SOL_IP for IPv4 peers (also mapped ones on
// a dual-stack socket), SOL_IPV6 for IPv6 ones. 0 on success.
static int original_dst(int fd, struct sockaddr_storage *out, const char **level)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	int ipv4 = 1;

	if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && peer.ss_family == AF_INET6)
		ipv4 = IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&peer)->sin6_addr);
	memset(out, 0, sizeof(*out));
	if (ipv4) {
		len = sizeof(struct sockaddr_in);
		*level = "SOL_IP";
		if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST_OPT, out, &len) == 0)
			return 0;
	}
	len = sizeof(struct sockaddr_in6);
	*level = "SOL_IPV6";
	return getsockopt(fd, SOL_IPV6, SO_ORIGINAL_DST_OPT, out, &len);
}

static void buf_original_dst(struct buf *b, int fd, struct sockaddr_storage *dst, int *ok)
{
	const char *level = NULL;
	char text[ADDR_TEXT];

	*ok = original_dst(fd, dst, &level) == 0;
	if (*ok) {
		format_addr(dst, text, sizeof(text));
		buf_key_str(b, "original_dst", text);
		buf_str(b, ",");
		buf_key_str(b, "original_dst_level", level);
	} else {
		const char *name = errno_name(errno);
		buf_printf(b, "\"original_dst\":null,\"original_dst_error\":\"%s\"",
			   name ? name : "unknown");
	}
}

// --- servers -----------------------------------------------------------------------

#define MAX_CHILDREN 256 // a capture loop (a proxy whose own connects come back) stays bounded

static volatile sig_atomic_t children;

static void child_reaped(void)
{
	children--;
}

// Servers run as PID 1 of their container, where a signal without a handler is
// ignored: SIGTERM must stop them. Children (one per connection) are counted and
// reaped.
static void server_signals(void)
{
	pid1_signals(child_reaped);
	pid1_handle(SIGPIPE, SIG_IGN);
}

static int listen_on(const char *host, int port)
{
	struct sockaddr_storage ss;
	int one = 1, zero = 0, fd;
	const char *error = NULL;

	memset(&ss, 0, sizeof(ss));
	if (!strcmp(host, "::") || !*host) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = htons(port);
		fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
			if (bind(fd, (struct sockaddr *)&ss, sizeof(*sin6)) == 0 &&
			    listen(fd, 128) == 0)
				return fd;
			if (errno != EADDRNOTAVAIL && errno != EAFNOSUPPORT) {
				perror("node-app: listen on [::]");
				exit(1);
			}
			close(fd);
		}
		host = "0.0.0.0"; // no IPv6 in this netns
	}
	if (resolve(host, (unsigned)port, &ss, 1, &error) != 1) {
		fprintf(stderr, "node-app: cannot listen on %s: %s\n", host,
			error ? error : "not an address");
		exit(1);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("node-app: socket");
		exit(1);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, addr_len(&ss)) < 0 || listen(fd, 128) < 0) {
		fprintf(stderr, "node-app: listen on %s port %d: %s\n", host, port,
			strerror(errno));
		exit(1);
	}
	return fd;
}

// Accepts forever; `handle` runs in a child process per connection. With `announce`,
// each connection is also reported as {"event":"accept","name","peer","local"}.
static void accept_loop(int lfd, const char *announce, void (*handle)(int, void *), void *ctx)
{
	puts("READY");
	fflush(stdout);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pid_t pid;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("node-app: accept");
			exit(1);
		}
		if (announce) {
			struct buf b = { 0 };
			buf_str(&b, "\"event\":\"accept\",");
			buf_key_str(&b, "name", announce);
			buf_str(&b, ",");
			buf_sock_addrs(&b, fd);
			emit(&b);
		}
		sigset_t block, previous;
		sigemptyset(&block);
		sigaddset(&block, SIGCHLD);
		// The counter changes in the handler too: no SIGCHLD in between.
		sigprocmask(SIG_BLOCK, &block, &previous);
		if (children >= MAX_CHILDREN) {
			sigprocmask(SIG_SETMASK, &previous, NULL);
			fprintf(stderr,
				"node-app: %d connections open, closing a new one (a loop?)\n",
				(int)children);
			close(fd);
			continue;
		}
		children++;
		pid = fork();
		if (pid == 0) {
			sigprocmask(SIG_SETMASK, &previous, NULL);
			close(lfd);
			handle(fd, ctx);
			_exit(0);
		}
		if (pid < 0) {
			children--;
			perror("node-app: fork");
		}
		sigprocmask(SIG_SETMASK, &previous, NULL);
		close(fd);
	}
}

struct serve_opts {
	const char *name;
	int original_dst;
};

static void echo_until_eof(int fd, const char *pending, size_t pending_len)
{
	char data[65536];

	if (pending_len && write_all(fd, pending, pending_len) < 0)
		return;
	for (;;) {
		ssize_t n = recv(fd, data, sizeof(data), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || write_all(fd, data, (size_t)n) < 0)
			return;
	}
}

static void serve_connection(int fd, void *ctx)
{
	const struct serve_opts *opts = ctx;
	char line[LINE_MAX_BYTES], extra[LINE_MAX_BYTES];
	size_t line_len, extra_len;
	struct sockaddr_storage dst;
	struct buf b = { 0 };
	ssize_t rc;
	int ok;

	rc = read_line(fd, line, &line_len, extra, &extra_len, now_s() + FIRST_LINE_SECONDS);
	if (rc == -1 || (rc == -2 && line_len == 0))
		return;
	buf_key_str(&b, "name", opts->name);
	buf_str(&b, ",");
	buf_sock_addrs(&b, fd);
	buf_str(&b, ",\"got\":");
	buf_json_str(&b, line, line_len);
	if (opts->original_dst) {
		buf_str(&b, ",");
		buf_original_dst(&b, fd, &dst, &ok);
	}
	buf_str(&b, "}\n");
	if (write_all(fd, "{", 1) < 0 || write_all(fd, b.p, b.len) < 0 || rc == -2)
		return;
	echo_until_eof(fd, extra, extra_len);
}

static int cmd_serve(int argc, char **argv)
{
	struct serve_opts opts = { .name = "node-app" };
	const char *host = "::";
	int port = -1;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--original-dst")) {
			opts.original_dst = 1;
			continue;
		}
		if (i + 1 >= argc)
			die_usage("serve: %s needs a value", argv[i]);
		if (!strcmp(argv[i], "--port"))
			port = parse_port(argv[++i]);
		else if (!strcmp(argv[i], "--name"))
			opts.name = argv[++i];
		else if (!strcmp(argv[i], "--host"))
			host = argv[++i];
		else
			die_usage("serve: unknown option %s", argv[i]);
	}
	if (port < 0)
		die_usage("serve needs --port");
	server_signals();
	accept_loop(listen_on(host, port), opts.name, serve_connection, &opts);
	return 0;
}

// --- call --------------------------------------------------------------------------

static int connect_to(const char *to, double deadline, struct buf *b, int *fd_out)
{
	char host[256];
	unsigned port;
	struct sockaddr_storage addrs[8];
	const char *error = NULL;
	int n, err = 0, fd = -1;

	if (split_host_port(to, host, sizeof(host), &port) < 0)
		die_usage("--to %s: expected HOST:PORT or [IPv6]:PORT", to);
	n = resolve(host, port, addrs, 8, &error);
	if (n == 0) {
		buf_error(b, "resolve", error);
		return -1;
	}
	for (int i = 0; i < n && fd < 0; i++)
		fd = connect_deadline(&addrs[i], deadline, &err);
	if (fd < 0) {
		buf_connect_error(b, err);
		return -1;
	}
	*fd_out = fd;
	return 0;
}

static int cmd_call(int argc, char **argv)
{
	const char *to = NULL, *send_text = "hello";
	double timeout = 5, deadline;
	char line[LINE_MAX_BYTES], extra[LINE_MAX_BYTES];
	size_t line_len, extra_len;
	struct buf b = { 0 }, addrs = { 0 };
	struct buf out = { 0 };
	ssize_t rc;
	int fd, ok = 0;

	for (int i = 0; i < argc; i++) {
		if (i + 1 >= argc)
			die_usage("call: %s needs a value", argv[i]);
		if (!strcmp(argv[i], "--to"))
			to = argv[++i];
		else if (!strcmp(argv[i], "--send"))
			send_text = argv[++i];
		else if (!strcmp(argv[i], "--timeout"))
			timeout = parse_seconds(argv[++i]);
		else
			die_usage("call: unknown option %s", argv[i]);
	}
	if (!to)
		die_usage("call needs --to HOST:PORT");
	signal(SIGPIPE, SIG_IGN);
	deadline = now_s() + timeout;
	if (connect_to(to, deadline, &b, &fd) < 0) {
		buf_str(&out, "\"ok\":false,\"reply\":null,");
		buf_add(&out, b.p, b.len);
		buf_str(&out, ",\"local\":null,\"peer\":null");
		free(b.p);
		emit(&out);
		return 1;
	}
	buf_sock_addrs(&addrs, fd);
	if (write_all(fd, send_text, strlen(send_text)) < 0 || write_all(fd, "\n", 1) < 0) {
		buf_errno(&b, errno);
	} else {
		rc = read_line(fd, line, &line_len, extra, &extra_len, deadline);
		if (rc >= 0 && json_valid(line, line_len)) {
			ok = 1;
		} else if (rc == -1) {
			buf_connect_error(&b, errno);
		} else if (rc == -2 && line_len == 0) {
			buf_error(&b, "closed", "the server closed the connection without a reply");
		} else {
			buf_error(&b, "not-json", "the reply is not one JSON line");
			buf_str(&b, ",\"reply_text\":");
			buf_json_str(&b, line, line_len);
		}
	}
	close(fd);
	buf_printf(&out, "\"ok\":%s,\"reply\":", ok ? "true" : "false");
	if (ok)
		buf_add(&out, line, line_len);
	else
		buf_str(&out, "null");
	buf_str(&out, ",");
	buf_add(&out, addrs.p, addrs.len);
	if (!ok) {
		buf_str(&out, ",");
		buf_add(&out, b.p, b.len);
	}
	free(b.p);
	free(addrs.p);
	emit(&out);
	return ok ? 0 : 1;
}

// --- stream ------------------------------------------------------------------------

// A pattern without short periods: a lost or repeated block shows at its first byte.
static unsigned char pattern_at(uint64_t i)
{
	uint64_t x = (i >> 3) + 0x9e3779b97f4a7c15ULL;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (unsigned char)(x >> ((i & 7) * 8));
}

static int cmd_stream(int argc, char **argv)
{
	const char *to = NULL;
	unsigned long long total = 0, chunk = 16384, rate = 0;
	double timeout = 10, max_gap = 2;
	int have_bytes = 0;

	for (int i = 0; i < argc; i++) {
		if (i + 1 >= argc)
			die_usage("stream: %s needs a value", argv[i]);
		if (!strcmp(argv[i], "--to"))
			to = argv[++i];
		else if (!strcmp(argv[i], "--bytes"))
			total = parse_count(argv[++i]), have_bytes = 1;
		else if (!strcmp(argv[i], "--chunk"))
			chunk = parse_count(argv[++i]);
		else if (!strcmp(argv[i], "--rate"))
			rate = parse_count(argv[++i]);
		else if (!strcmp(argv[i], "--timeout"))
			timeout = parse_seconds(argv[++i]);
		else if (!strcmp(argv[i], "--max-gap"))
			max_gap = parse_seconds(argv[++i]);
		else
			die_usage("stream: unknown option %s", argv[i]);
	}
	if (!to || !have_bytes)
		die_usage("stream needs --to HOST:PORT and --bytes N");
	if (chunk == 0 || chunk > (1 << 20))
		die_usage("stream: --chunk between 1 and 1048576");
	signal(SIGPIPE, SIG_IGN);

	struct buf b = { 0 };
	char line[LINE_MAX_BYTES], extra[LINE_MAX_BYTES];
	size_t line_len, extra_len;
	double start = now_s(), waiting_since = 0, last_report, gap_max = 0;
	unsigned long long sent = 0, verified = 0;
	unsigned char *out_buf = malloc(chunk), in_buf[65536];
	const char *error = NULL;
	int fd, in_gap = 0;
	ssize_t rc;

	if (connect_to(to, start + timeout, &b, &fd) < 0) {
		struct buf out = { 0 };
		buf_printf(&out, "\"ok\":false,\"sent\":0,\"verified\":0,");
		buf_add(&out, b.p, b.len);
		free(b.p);
		emit(&out);
		return 1;
	}
	if (write_all(fd, "stream\n", 7) < 0) {
		error = "send";
		goto done;
	}
	rc = read_line(fd, line, &line_len, extra, &extra_len, now_s() + timeout);
	if (rc < 0 || !json_valid(line, line_len) || extra_len) {
		error = rc == -1 ? "no reply from the server"
				 : "the server's first line is not JSON";
		goto done;
	}
	buf_str(&b, "\"event\":\"connected\",\"reply\":");
	buf_add(&b, line, line_len);
	buf_str(&b, ",");
	buf_sock_addrs(&b, fd);
	emit(&b);

	set_nonblocking(fd, 1);
	last_report = now_s();
	while (verified < total) {
		double now = now_s();
		unsigned long long allowed = total;
		int wait_ms = 200;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (rate && sent < total) {
			// Whole chunks, each once the rate allows it: no trickle of tiny sends.
			double budget = (now - start) * (double)rate + (double)chunk;
			unsigned long long want = total - sent < chunk ? total - sent : chunk;
			if (budget < (double)(sent + want)) {
				int ms = (int)(((double)(sent + want) - budget) * 1000 /
					       (double)rate) +
					 1;
				wait_ms = ms < wait_ms ? ms : wait_ms;
				allowed = sent;
			}
		}
		if (sent < allowed)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR) {
			error = "poll";
			break;
		}
		now = now_s();
		if (pfd.revents & POLLOUT) {
			unsigned long long n = allowed - sent < chunk ? allowed - sent : chunk;
			for (unsigned long long k = 0; k < n; k++)
				out_buf[k] = pattern_at(sent + k);
			ssize_t w = send(fd, out_buf, n, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				buf_errno(&b, errno);
				error = "";
				break;
			}
			if (w > 0) {
				if (sent == verified)
					waiting_since = now; // the echo clock starts now
				sent += (unsigned long long)w;
			}
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(fd, in_buf, sizeof(in_buf), 0);
			if (n == 0) {
				error = "the server closed the connection before echoing every "
					"byte";
				break;
			}
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				buf_errno(&b, errno);
				error = "";
				break;
			}
			if (n > 0) {
				if (verified + (unsigned long long)n > sent) {
					error = "more bytes came back than were sent";
					break;
				}
				for (ssize_t k = 0; k < n; k++) {
					if (in_buf[k] !=
					    pattern_at(verified + (unsigned long long)k)) {
						buf_printf(&b,
							   "\"mismatch_at\":%llu,\"expected\":%u,"
							   "\"got\":%u",
							   verified + (unsigned long long)k,
							   pattern_at(verified +
								      (unsigned long long)k),
							   in_buf[k]);
						error = "mismatch";
						break;
					}
				}
				if (error)
					break;
				if (now - waiting_since > gap_max)
					gap_max = now - waiting_since;
				if (in_gap) {
					struct buf g = { 0 };
					buf_printf(&g,
						   "\"event\":\"gap\",\"seconds\":%.3f,\"at\":%llu",
						   now - waiting_since, verified);
					emit(&g);
					in_gap = 0;
				}
				verified += (unsigned long long)n;
				waiting_since = now;
			}
		}
		if (sent > verified) {
			double gap = now - waiting_since;
			if (gap > gap_max)
				gap_max = gap;
			if (gap > max_gap)
				in_gap = 1;
			if (gap > timeout) {
				error = "stalled: no echo within --timeout";
				break;
			}
		}
		if (now - last_report >= 1.0) {
			struct buf p = { 0 };
			buf_printf(&p,
				   "\"event\":\"progress\",\"sent\":%llu,\"verified\":%llu,"
				   "\"elapsed_s\":%.3f",
				   sent, verified, now - start);
			emit(&p);
			last_report = now;
		}
	}
done:
	close(fd);
	free(out_buf);
	{
		struct buf out = { 0 };
		int ok = !error && verified == total && gap_max <= max_gap;
		buf_printf(&out,
			   "\"ok\":%s,\"sent\":%llu,\"verified\":%llu,\"seconds\":%.3f,"
			   "\"max_gap_s\":%.3f",
			   ok ? "true" : "false", sent, verified, now_s() - start, gap_max);
		if (!ok && !error)
			error = "a gap longer than --max-gap";
		if (error && *error) {
			buf_str(&out, ",");
			buf_key_str(&out, "error", error);
		}
		if (b.len) {
			buf_str(&out, ",");
			buf_add(&out, b.p, b.len);
		}
		free(b.p);
		emit(&out);
		return ok ? 0 : 1;
	}
}

// --- istio-validation --------------------------------------------------------------

static int cmd_istio_validation(int argc, char **argv)
{
	int ipv6 = 0, family, listeners[2] = { -1, -1 }, client = -1, conn = -1, err = 0;
	const int ports[2] = { 15001, 15006 };
	const char *listen_ip, *server_ip;
	double timeout = 5;
	struct sockaddr_storage ss;
	struct buf out = { 0 }, error = { 0 };
	char text[ADDR_TEXT];
	int listener = -1, ok = 0, one = 1;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--ipv6"))
			ipv6 = 1;
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = parse_seconds(argv[++i]);
		else
			die_usage("istio-validation: unknown option %s", argv[i]);
	}
	listen_ip = ipv6 ? "::1" : "127.0.0.1";
	server_ip = ipv6 ? "::6" : "127.0.0.6";
	family = ipv6 ? AF_INET6 : AF_INET;
	text[0] = 0;

	for (int i = 0; i < 2; i++) {
		const char *unused = NULL;
		resolve(listen_ip, (unsigned)ports[i], &ss, 1, &unused);
		listeners[i] = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listeners[i] < 0 ||
		    setsockopt(listeners[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(listeners[i], (struct sockaddr *)&ss, addr_len(&ss)) < 0 ||
		    listen(listeners[i], 16) < 0) {
			buf_errno(&error, errno);
			goto done;
		}
	}
	{
		const char *unused = NULL;
		struct sockaddr_storage bind_addr, server;
		double deadline = now_s() + timeout;
		struct pollfd pfds[2];
		socklen_t len;

		resolve(listen_ip, 0, &bind_addr, 1, &unused);
		resolve(server_ip, 15002, &server, 1, &unused);
		client = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (client < 0 ||
		    bind(client, (struct sockaddr *)&bind_addr, addr_len(&bind_addr)) < 0) {
			buf_errno(&error, errno);
			goto done;
		}
		// The client socket is bound; connect it with a deadline (a fresh socket in
		// connect_deadline would lose the bind).
		set_nonblocking(client, 1);
		if (connect(client, (struct sockaddr *)&server, addr_len(&server)) < 0) {
			struct pollfd cp = { .fd = client, .events = POLLOUT };
			if (errno != EINPROGRESS) {
				buf_errno(&error, errno);
				goto done;
			}
			if (poll(&cp, 1, ms_until(deadline)) <= 0) {
				buf_error(&error, "timeout", "connect did not complete");
				goto done;
			}
			len = sizeof(err);
			getsockopt(client, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err) {
				buf_errno(&error, err);
				goto done;
			}
		}
		for (int i = 0; i < 2; i++) {
			pfds[i].fd = listeners[i];
			pfds[i].events = POLLIN;
			pfds[i].revents = 0;
		}
		if (poll(pfds, 2, ms_until(deadline)) <= 0) {
			buf_error(&error, "not-accepted",
				  "connected, but neither 15001 nor 15006 got the connection");
			goto done;
		}
		for (int i = 0; i < 2 && listener < 0; i++)
			if (pfds[i].revents & POLLIN)
				listener = i;
		conn = accept4(listeners[listener], NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			buf_errno(&error, errno);
			goto done;
		}
		memset(&ss, 0, sizeof(ss));
		len = ipv6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
		if (getsockopt(conn, ipv6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST_OPT, &ss, &len) <
		    0) {
			buf_errno(&error, errno);
			goto done;
		}
		format_addr(&ss, text, sizeof(text));
		ok = ntohs(((struct sockaddr_in *)&ss)->sin_port) == 15002;
		if (!ok)
			buf_error(&error, "wrong-original-dst",
				  "SO_ORIGINAL_DST is not port 15002");
	}
done:
	buf_printf(&out, "\"ok\":%s,", ok ? "true" : "false");
	if (listener >= 0)
		buf_printf(&out, "\"listener\":%d,", ports[listener]);
	else
		buf_str(&out, "\"listener\":null,");
	buf_key_str(&out, "original_dst", text[0] ? text : NULL);
	if (error.len) {
		buf_str(&out, ",");
		buf_add(&out, error.p, error.len);
	} else {
		buf_str(&out, ",\"error\":null");
	}
	if (!ok)
		fprintf(stderr, "istio-validation: capture does not work: {%s}\n", out.p);
	free(error.p);
	emit(&out);
	if (conn >= 0)
		close(conn);
	if (client >= 0)
		close(client);
	for (int i = 0; i < 2; i++)
		if (listeners[i] >= 0)
			close(listeners[i]);
	return ok ? 0 : 1;
}

// --- original-dst-proxy ------------------------------------------------------------

struct relay_side {
	int from, to, open;
	char data[65536];
	size_t len, off;
};

// Copies both ways until both directions are closed; half-closes are passed on.
static void relay(int a, int b)
{
	struct relay_side sides[2] = { { .from = a, .to = b, .open = 1 },
				       { .from = b, .to = a, .open = 1 } };

	while (sides[0].open || sides[1].open || sides[0].len || sides[1].len) {
		struct pollfd pfds[2];
		for (int i = 0; i < 2; i++) {
			pfds[i].fd = sides[i].len ? sides[i].to : sides[i].from;
			pfds[i].events = sides[i].len ? POLLOUT : (sides[i].open ? POLLIN : 0);
			if (!pfds[i].events)
				pfds[i].fd = -1;
		}
		if (poll(pfds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			struct relay_side *s = &sides[i];
			if (!pfds[i].revents)
				continue;
			if (s->len) {
				ssize_t w = send(s->to, s->data + s->off, s->len - s->off,
						 MSG_NOSIGNAL);
				if (w < 0 && errno != EINTR && errno != EAGAIN)
					return;
				if (w > 0 && (s->off += (size_t)w) == s->len)
					s->len = s->off = 0;
				if (!s->len && !s->open)
					shutdown(s->to, SHUT_WR);
			} else {
				ssize_t n = recv(s->from, s->data, sizeof(s->data), 0);
				if (n < 0 && (errno == EINTR || errno == EAGAIN))
					continue;
				if (n <= 0) {
					s->open = 0;
					shutdown(s->to, SHUT_WR);
					if (n < 0)
						return;
				} else {
					s->len = (size_t)n;
				}
			}
		}
	}
}

struct proxy_opts {
	const char *name;
};

static void proxy_connection(int fd, void *ctx)
{
	const struct proxy_opts *opts = ctx;
	struct sockaddr_storage dst, local;
	socklen_t len = sizeof(local);
	struct buf b = { 0 };
	int ok, up = -1, err = 0;
	char text[ADDR_TEXT];

	buf_str(&b, "\"event\":\"proxy\",");
	buf_key_str(&b, "name", opts->name);
	buf_str(&b, ",");
	buf_sock_addrs(&b, fd);
	buf_str(&b, ",");
	buf_original_dst(&b, fd, &dst, &ok);
	getsockname(fd, (struct sockaddr *)&local, &len);
	if (ok) {
		// Not captured (a client that dialed the proxy itself): never loop back.
		char a[ADDR_TEXT], l[ADDR_TEXT];
		format_addr(&dst, a, sizeof(a));
		format_addr(&local, l, sizeof(l));
		if (!strcmp(a, l)) {
			buf_str(&b, ",\"error\":\"the original destination is the proxy itself\"");
			ok = 0;
		}
	}
	if (ok) {
		up = connect_deadline(&dst, now_s() + 10, &err);
		buf_str(&b, ",");
		if (up < 0) {
			buf_connect_error(&b, err);
		} else {
			len = sizeof(local);
			getsockname(up, (struct sockaddr *)&local, &len);
			format_addr(&local, text, sizeof(text));
			buf_key_str(&b, "upstream_local", text);
		}
	}
	emit(&b);
	if (up >= 0) {
		set_nonblocking(fd, 1);
		set_nonblocking(up, 1);
		relay(fd, up);
		close(up);
	}
}

static int cmd_original_dst_proxy(int argc, char **argv)
{
	struct proxy_opts opts = { .name = "proxy" };
	const char *host = "::";
	int port = -1;

	for (int i = 0; i < argc; i++) {
		if (i + 1 >= argc)
			die_usage("original-dst-proxy: %s needs a value", argv[i]);
		if (!strcmp(argv[i], "--port"))
			port = parse_port(argv[++i]);
		else if (!strcmp(argv[i], "--host"))
			host = argv[++i];
		else if (!strcmp(argv[i], "--name"))
			opts.name = argv[++i];
		else
			die_usage("original-dst-proxy: unknown option %s", argv[i]);
	}
	if (port < 0)
		die_usage("original-dst-proxy needs --port");
	server_signals();
	accept_loop(listen_on(host, port), NULL, proxy_connection, &opts);
	return 0;
}

// --- info ------------------------------------------------------------------------

extern char **environ;

static int cmd_info(int argc, char **argv)
{
	struct buf b = { 0 };
	gid_t groups[64];
	char cwd[4096], host[256];
	int n = getgroups(64, groups);

	buf_printf(&b, "\"uid\":%u,\"gid\":%u,\"groups\":[", (unsigned)getuid(),
		   (unsigned)getgid());
	for (int i = 0; i < n; i++)
		buf_printf(&b, "%s%u", i ? "," : "", (unsigned)groups[i]);
	buf_str(&b, "],");
	buf_key_str(&b, "cwd", getcwd(cwd, sizeof(cwd)) ? cwd : NULL);
	buf_str(&b, ",");
	buf_key_str(&b, "hostname", gethostname(host, sizeof(host)) == 0 ? host : NULL);
	buf_str(&b, ",\"argv\":[");
	for (int i = 0; i < argc; i++) {
		buf_str(&b, i ? "," : "");
		buf_json_str(&b, argv[i], strlen(argv[i]));
	}
	buf_str(&b, "],\"env\":[");
	for (char **e = environ; *e; e++) {
		buf_str(&b, e == environ ? "" : ",");
		buf_json_str(&b, *e, strlen(*e));
	}
	buf_str(&b, "]");
	emit(&b);
	return 0;
}

// --- main --------------------------------------------------------------------------

static void usage(FILE *f)
{
	fputs("usage: node-app serve --port P [--name N] [--host ADDR] [--original-dst]\n"
	      "       node-app call --to HOST:PORT [--send TEXT] [--timeout S]\n"
	      "       node-app stream --to HOST:PORT --bytes N [--chunk K] [--rate BYTES_PER_S]\n"
	      "                       [--timeout S] [--max-gap S]\n"
	      "       node-app istio-validation [--ipv6] [--timeout S]\n"
	      "       node-app info\n"
	      "       node-app original-dst-proxy --port P [--host ADDR] [--name N]\n"
	      "Each result is one JSON line on stdout (see tests/tools/node_app.c).\n",
	      f);
}

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
	{ .name = "serve", .run = cmd_serve },
	{ .name = "call", .run = cmd_call },
	{ .name = "stream", .run = cmd_stream },
	{ .name = "istio-validation", .run = cmd_istio_validation },
	{ .name = "info", .run = cmd_info },
	{ .name = "original-dst-proxy", .run = cmd_original_dst_proxy },
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 2, argv + 2);
	usage(stderr);
	return 2;
}

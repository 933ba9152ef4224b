// sockaddr_text.h: a socket address as the test tools print and read it, shared
// by node_app.c and connect_variants.c so that both read like tests/tools/probe.py.

#ifndef SOCKADDR_TEXT_H
#define SOCKADDR_TEXT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

// "ip:port" or "[ip6]:port"; IPv4-mapped IPv6 prints as IPv4, as probe.py does.
static void format_addr(const struct sockaddr_storage *addr, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(out, size, "%s:%u", host, ntohs(sin->sin_port));
	} else if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], host, sizeof(host));
			snprintf(out, size, "%s:%u", host, ntohs(sin6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
			snprintf(out, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
		}
	} else {
		snprintf(out, size, "family %d", addr->ss_family);
	}
}

// A numeric IPv4 or IPv6 address (no brackets) and a port, into *out. Returns the
// address's length, or 0 when host is not a numeric address.
static socklen_t parse_numeric_addr(const char *host, unsigned port, struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		return sizeof(*sin);
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		return sizeof(*sin6);
	}
	return 0;
}

#endif // SOCKADDR_TEXT_H

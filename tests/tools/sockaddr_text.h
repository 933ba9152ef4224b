// sockaddr_text.h: a socket address as the test tools print it, shared by
// node_app.c and connect_variants.c so that both read like tests/tools/probe.py.

#ifndef SOCKADDR_TEXT_H
#define SOCKADDR_TEXT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
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

#endif // SOCKADDR_TEXT_H

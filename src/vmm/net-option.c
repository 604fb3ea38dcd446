/*
 * Parser for --net (see net-option.h): the first item names the back end
 * (user, or tap=NAME), the rest are key=value items split by base/kvopt,
 * one table entry per key. Every mistake is reported in one line naming
 * the item and what would be accepted.
 */
#include "vmm/net-option.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "base/errbuf.h"
#include "base/kvopt.h"

#define NET_SYNTAX "user[,hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT]...[,host-loopback=on][,mac=M] " \
	"or tap=NAME[,mac=M]"
#define FWD_SYNTAX "hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[" NET_SLIRP_GUEST "]:GUESTPORT"

/* A decimal port 1..65535, the whole of `text`. */
static bool parse_port(const char *text, uint16_t *out)
{
	if (!*text || strlen(text) > 5)
		return false;
	unsigned v = 0;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* "[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT" */
static bool parse_hostfwd(void *ctx, const char *value, char *err, size_t errlen)
{
	struct net_option *n = ctx;
	if (n->kind != NET_USER)
		return errbuf_fail(err, errlen, "--net hostfwd=%s: host forwards need --net user", value);
	if (n->slirp.nfwd == NET_SLIRP_MAX_FWD)
		return errbuf_fail(err, errlen, "--net: more than %d hostfwd= items", NET_SLIRP_MAX_FWD);
	char buf[128];
	if (strlen(value) >= sizeof(buf))
		return errbuf_fail(err, errlen, "--net hostfwd=%.40s...: too long", value);
	strcpy(buf, value);
	struct net_hostfwd f = { .host_addr.s_addr = htonl(INADDR_LOOPBACK) };
	/* Split into proto, host address, host port, guest address, guest port. */
	char *proto = buf, *c1 = strchr(buf, ':');
	char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	char *dash = c2 ? strchr(c2 + 1, '-') : NULL;
	char *c3 = dash ? strchr(dash + 1, ':') : NULL;
	if (!c3 || strchr(c3 + 1, ':'))
		return errbuf_fail(err, errlen, "--net hostfwd=%s: use " FWD_SYNTAX, value);
	*c1 = *c2 = *dash = *c3 = '\0';
	char *haddr = c1 + 1, *hport = c2 + 1, *gaddr = dash + 1, *gport = c3 + 1;
	if (strcmp(proto, "udp") == 0)
		f.udp = true;
	else if (*proto && strcmp(proto, "tcp") != 0)
		return errbuf_fail(err, errlen, "--net hostfwd=%s: protocol '%s'; use tcp or udp", value, proto);
	if (*haddr && inet_pton(AF_INET, haddr, &f.host_addr) != 1)
		return errbuf_fail(err, errlen, "--net hostfwd=%s: host address '%s' is not an IPv4 address",
			           value, haddr);
	if (!parse_port(hport, &f.host_port) || !parse_port(gport, &f.guest_port))
		return errbuf_fail(err, errlen, "--net hostfwd=%s: ports must be numbers from 1 to 65535",
			           value);
	if (*gaddr && strcmp(gaddr, NET_SLIRP_GUEST) != 0)
		return errbuf_fail(err, errlen, "--net hostfwd=%s: guest address '%s'; only the guest's "
			           "DHCP address " NET_SLIRP_GUEST " (or nothing) is accepted", value, gaddr);
	for (unsigned i = 0; i < n->slirp.nfwd; i++)
		if (n->slirp.fwd[i].host_port == f.host_port && n->slirp.fwd[i].udp == f.udp)
			return errbuf_fail(err, errlen, "--net hostfwd=%s: host port %u is forwarded twice",
				           value, f.host_port);
	n->slirp.fwd[n->slirp.nfwd++] = f;
	return true;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "xx:xx:xx:xx:xx:xx", unicast, not all zeros. */
static bool parse_mac(void *ctx, const char *value, char *err, size_t errlen)
{
	struct net_option *n = ctx;
	uint8_t m[6];
	const char *p = value;
	for (int i = 0; i < 6; i++) {
		int hi = hex_digit(p[0]), lo = hi < 0 ? -1 : hex_digit(p[1]);
		if (lo < 0 || p[2] != (i < 5 ? ':' : '\0'))
			return errbuf_fail(err, errlen, "--net mac=%s: use six hex bytes, e.g. mac=02:00:00:00:00:01",
				           value);
		m[i] = (uint8_t)(hi << 4 | lo);
		p += 3;
	}
	if (m[0] & 1)
		return errbuf_fail(err, errlen, "--net mac=%s: a multicast address; the first byte must be even",
			           value);
	if (!(m[0] | m[1] | m[2] | m[3] | m[4] | m[5]))
		return errbuf_fail(err, errlen, "--net mac=%s: the zero address is not a NIC address", value);
	memcpy(n->mac, m, 6);
	return true;
}

/* "on" or "off": whether 10.0.2.2 leads to the host's loopback. */
static bool parse_host_loopback(void *ctx, const char *value, char *err, size_t errlen)
{
	struct net_option *n = ctx;
	if (n->kind != NET_USER)
		return errbuf_fail(err, errlen, "--net host-loopback=%s: only --net user has a gateway to the "
			           "host", value);
	if (strcmp(value, "on") == 0)
		n->slirp.host_loopback = true;
	else if (strcmp(value, "off") == 0)
		n->slirp.host_loopback = false;
	else
		return errbuf_fail(err, errlen, "--net host-loopback=%s: use on or off", value);
	return true;
}

static const struct kvopt_key net_keys[] = {
	{ .name = "hostfwd", .set = parse_hostfwd, .repeat = true },
	{ .name = "host-loopback", .set = parse_host_loopback },
	{ .name = "mac", .set = parse_mac },
};

static const struct kvopt_spec net_spec = {
	.option = "--net",
	.syntax = NET_SYNTAX,
	.keys = net_keys,
	.nkeys = sizeof(net_keys) / sizeof(net_keys[0]),
};

static bool parse_kind(struct net_option *n, const char *item, size_t len, char *err, size_t errlen)
{
	if (len == 4 && strncmp(item, "user", 4) == 0) {
		n->kind = NET_USER;
		return true;
	}
	if (len > 4 && strncmp(item, "tap=", 4) == 0) {
		size_t nlen = len - 4;
		if (nlen >= sizeof(n->tap))
			return errbuf_fail(err, errlen, "--net %.*s: interface names have at most %zu bytes",
				           (int)len, item, sizeof(n->tap) - 1);
		n->kind = NET_TAP;
		memcpy(n->tap, item + 4, nlen);
		n->tap[nlen] = '\0';
		return true;
	}
	return errbuf_fail(err, errlen, "--net %.*s: the first item names the back end; use " NET_SYNTAX,
		           (int)len, item);
}

bool net_option_parse(const char *text, unsigned index, struct net_option *out, char *err,
		      size_t errlen)
{
	struct net_option n = { .mac = { 0x02, 0x73, 0x68, 0x6f, 0x00, (uint8_t)index } };
	const char *comma = strchr(text, ',');
	if (!parse_kind(&n, text, comma ? (size_t)(comma - text) : strlen(text), err, errlen))
		return false;
	if (comma && !kvopt_parse(&net_spec, comma + 1, &n, err, errlen))
		return false;
	*out = n;
	return true;
}

/*
 * The user-mode back end (src/net/slirp.c) with a fake guest in this
 * process, no KVM and no NIC: the test builds Ethernet frames itself
 * (DHCP, ARP replies, a minimal TCP) and exchanges them through the back
 * end's send/peek/pop, waiting on its wake callback.
 *   - DHCP DISCOVER gets an OFFER of 10.0.2.15 from 10.0.2.2;
 *   - with host_loopback, a TCP connection from the guest to 10.0.2.2:PORT
 *     reaches a listener on the host's 127.0.0.1:PORT, and bytes go both
 *     ways; without it (the default) the guest is refused and the listener
 *     sees nothing;
 *   - a host forward (127.0.0.1:HOSTPORT -> guest port 8080) reaches the
 *     fake guest, and bytes go both ways;
 *   - the same three under the VMM's seccomp filter (a child process with
 *     sandbox_enter_with(SANDBOX_NET_USER)), so a system call libslirp
 *     needs and the list lacks fails here, not in a user's VM. Sanitizer
 *     builds do not install the filter (see vmm/sandbox.c).
 * All traffic stays on 127.0.0.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "net/net.h"
#include "vmm/sandbox.h"

#define WAIT_MS    5000
#define GUEST_FWD_PORT 8080

static const uint8_t guest_mac[6] = { 0x02, 0x73, 0x68, 0x6f, 0x00, 0x00 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

struct guest {
	struct net_backend *nb;
	int wake_fd;
	uint8_t gw_mac[6];
	uint32_t ip;          /* network order */
	char why[160];        /* what failed */
};

/* A received frame, parsed. */
struct pkt {
	uint8_t b[NET_HDR_LEN + 4096];
	size_t len;           /* Ethernet frame bytes in b */
	uint8_t proto;
	uint32_t src, dst;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	const uint8_t *data;  /* UDP or TCP payload */
	size_t data_len;
};

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

static bool failed(struct guest *g, const char *what)
{
	snprintf(g->why, sizeof(g->why), "%s", what);
	return false;
}

static void wake(void *ctx)
{
	struct guest *g = ctx;
	uint64_t one = 1;
	ssize_t w = write(g->wake_fd, &one, sizeof(one));
	(void)w;
}

/* ---- building frames ---- */

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)(p[len - 1] << 8);
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static void guest_send(struct guest *g, const uint8_t *frame, size_t len)
{
	static const uint8_t hdr[NET_HDR_LEN];
	struct iovec iov[2] = { { (void *)hdr, NET_HDR_LEN }, { (void *)frame, len } };
	g->nb->ops->send(g->nb, iov, 2, NET_HDR_LEN + len);
}

/* Ethernet + IPv4 around an L4 payload already in f + 34; returns the frame length. */
static size_t ip_frame(struct guest *g, uint8_t *f, const uint8_t dst_mac[6], uint32_t src,
		       uint32_t dst, uint8_t proto, size_t l4_len)
{
	memcpy(f, dst_mac, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, 0x0800);
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + l4_len));
	ip[8] = 64;
	ip[9] = proto;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	put16(ip + 10, fold(sum16(0, ip, 20)));
	(void)g;
	return 14 + 20 + l4_len;
}

/* TCP/UDP checksum over the pseudo-header and l4. */
static uint16_t l4_csum(uint32_t src, uint32_t dst, uint8_t proto, const uint8_t *l4, size_t len)
{
	uint8_t ph[12];
	memcpy(ph, &src, 4);
	memcpy(ph + 4, &dst, 4);
	ph[8] = 0;
	ph[9] = proto;
	put16(ph + 10, (uint16_t)len);
	return fold(sum16(sum16(0, ph, 12), l4, len));
}

static void tcp_send(struct guest *g, uint32_t dst, uint16_t sport, uint16_t dport, uint32_t seq,
		     uint32_t ack, uint8_t flags, const void *data, size_t len)
{
	uint8_t f[1600] = { 0 };
	uint8_t *t = f + 34;
	put16(t, sport);
	put16(t + 2, dport);
	put32(t + 4, seq);
	put32(t + 8, ack);
	t[12] = 5 << 4;
	t[13] = flags;
	put16(t + 14, 65535);
	if (len) /* data is NULL for a bare SYN or ACK: memcpy's pointers must be valid even for 0 */
		memcpy(t + 20, data, len);
	put16(t + 16, l4_csum(g->ip, dst, 6, t, 20 + len));
	guest_send(g, f, ip_frame(g, f, g->gw_mac, g->ip, dst, 6, 20 + len));
}

static void arp_reply(struct guest *g, const uint8_t *req)
{
	uint8_t f[42];
	memcpy(f, req + 6, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, 0x0806);
	uint8_t *a = f + 14;
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, 2);
	memcpy(a + 8, guest_mac, 6);
	memcpy(a + 14, req + 14 + 24, 4);  /* the address asked for: ours */
	memcpy(a + 18, req + 14 + 8, 10);  /* the asker's MAC and address */
	guest_send(g, f, sizeof(f));
}

/* ---- receiving ---- */

static void parse(struct pkt *p)
{
	const uint8_t *f = p->b;
	p->proto = 0;
	if (p->len < 34 || get16(f + 12) != 0x0800)
		return;
	const uint8_t *ip = f + 14;
	size_t ihl = (size_t)(ip[0] & 15) * 4, tot = get16(ip + 2);
	if (tot > p->len - 14 || ihl < 20 || tot < ihl)
		return;
	p->proto = ip[9];
	memcpy(&p->src, ip + 12, 4);
	memcpy(&p->dst, ip + 16, 4);
	const uint8_t *l4 = ip + ihl;
	size_t l4_len = tot - ihl;
	if (p->proto == 17 && l4_len >= 8) {
		p->sport = get16(l4);
		p->dport = get16(l4 + 2);
		p->data = l4 + 8;
		p->data_len = l4_len - 8;
	} else if (p->proto == 6 && l4_len >= 20) {
		size_t off = (size_t)(l4[12] >> 4) * 4;
		p->sport = get16(l4);
		p->dport = get16(l4 + 2);
		p->seq = get32(l4 + 4);
		p->ack = get32(l4 + 8);
		p->flags = l4[13];
		p->data = l4 + off;
		p->data_len = off <= l4_len ? l4_len - off : 0;
	} else if (p->proto != 1) {
		p->proto = 0; /* ICMP is kept, for its "unreachable" */
	}
}

typedef bool (*match_fn)(const struct pkt *p, const void *arg);

/*
 * Takes frames from the back end until one matches (answering ARP for our
 * address on the way), waiting on the wake callback up to WAIT_MS.
 */
static bool guest_recv(struct guest *g, struct pkt *p, match_fn match, const void *arg)
{
	struct pollfd pfd = { .fd = g->wake_fd, .events = POLLIN };
	for (int waited = 0; waited < WAIT_MS;) {
		size_t len;
		uint8_t *f = g->nb->ops->peek(g->nb, &len);
		if (!f) {
			if (poll(&pfd, 1, 50) > 0) {
				uint64_t v;
				ssize_t r = read(g->wake_fd, &v, sizeof(v));
				(void)r;
			}
			waited += 50;
			continue;
		}
		bool hdr_zero = true;
		for (unsigned i = 0; i < NET_HDR_LEN; i++)
			hdr_zero = hdr_zero && f[i] == 0;
		p->len = len - NET_HDR_LEN < sizeof(p->b) ? len - NET_HDR_LEN : sizeof(p->b);
		memcpy(p->b, f + NET_HDR_LEN, p->len);
		g->nb->ops->pop(g->nb);
		if (!hdr_zero)
			return failed(g, "slirp frame with a non-zero virtio-net header");
		if (p->len >= 42 && get16(p->b + 12) == 0x0806 && get16(p->b + 20) == 1 &&
		    memcmp(p->b + 38, &g->ip, 4) == 0) {
			arp_reply(g, p->b);
			continue;
		}
		parse(p);
		if (match(p, arg))
			return true;
	}
	return failed(g, "timed out waiting for a frame");
}

/* ---- DHCP ---- */

static bool is_offer(const struct pkt *p, const void *arg)
{
	(void)arg;
	return p->proto == 17 && p->sport == 67 && p->dport == 68 && p->data_len >= 240 &&
	       p->data[0] == 2;
}

static bool scenario_dhcp(struct guest *g)
{
	uint8_t f[400] = { 0 };
	uint8_t *u = f + 34, *b = u + 8;
	b[0] = 1, b[1] = 1, b[2] = 6;          /* BOOTREQUEST, Ethernet, hlen */
	put32(b + 4, 0x5a5a1234);             /* xid */
	put16(b + 10, 0x8000);                /* broadcast reply */
	memcpy(b + 28, guest_mac, 6);
	put32(b + 236, 0x63825363);           /* magic cookie */
	uint8_t opts[] = { 53, 1, 1, 255 };   /* DHCPDISCOVER */
	memcpy(b + 240, opts, sizeof(opts));
	size_t blen = 300, ulen = 8 + blen;
	put16(u, 68);
	put16(u + 2, 67);
	put16(u + 4, (uint16_t)ulen);
	uint32_t any = 0, all = 0xffffffff;
	put16(u + 6, l4_csum(any, all, 17, u, ulen));
	guest_send(g, f, ip_frame(g, f, bcast, any, all, 17, ulen));

	struct pkt p;
	if (!guest_recv(g, &p, is_offer, NULL))
		return false;
	if (get32(p.data + 4) != 0x5a5a1234)
		return failed(g, "OFFER for another transaction");
	struct in_addr yi, want;
	memcpy(&yi, p.data + 16, 4);
	inet_pton(AF_INET, NET_SLIRP_GUEST, &want);
	if (yi.s_addr != want.s_addr)
		return failed(g, "OFFER of an address other than 10.0.2.15");
	inet_pton(AF_INET, NET_SLIRP_HOST, &want);
	if (p.src != want.s_addr)
		return failed(g, "OFFER not from 10.0.2.2");
	/* Option 53 (message type) must say OFFER (2). */
	bool offer = false;
	for (size_t i = 240; i + 2 < p.data_len && p.data[i] != 255; i += 2u + p.data[i + 1])
		if (p.data[i] == 53 && p.data[i + 2] == 2)
			offer = true;
	if (!offer)
		return failed(g, "DHCP reply is not an OFFER");
	memcpy(g->gw_mac, p.b + 6, 6);
	g->ip = yi.s_addr;
	return true;
}

/* ---- TCP ---- */

struct tcp_want {
	uint16_t sport, dport;  /* sport 0: any */
	uint8_t flags;        /* all of these set */
	size_t min_data;
};

static bool is_tcp(const struct pkt *p, const void *arg)
{
	const struct tcp_want *w = arg;
	return p->proto == 6 && (w->sport == 0 || p->sport == w->sport) && p->dport == w->dport &&
	       (p->flags & w->flags) == w->flags && p->data_len >= w->min_data;
}

static bool wait_fd(int fd, short ev)
{
	struct pollfd pfd = { .fd = fd, .events = ev };
	return poll(&pfd, 1, WAIT_MS) == 1;
}

static int listen_loopback(uint16_t *port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 4) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &alen) < 0)
		return -1;
	*port = ntohs(a.sin_port);
	return s;
}

/* Guest 10.0.2.15:40000 -> 10.0.2.2:PORT, which slirp maps to the host's 127.0.0.1:PORT. */
static bool scenario_tcp_out(struct guest *g, int listener, uint16_t port)
{
	uint32_t host;
	inet_pton(AF_INET, NET_SLIRP_HOST, &host);
	const uint16_t gport = 40000;
	uint32_t iss = 1000;
	tcp_send(g, host, gport, port, iss, 0, TH_SYN, NULL, 0);
	struct pkt p;
	struct tcp_want synack = { port, gport, TH_SYN | TH_ACK, 0 };
	if (!guest_recv(g, &p, is_tcp, &synack))
		return false;
	if (p.ack != iss + 1)
		return failed(g, "SYN-ACK acknowledges the wrong sequence number");
	uint32_t peer = p.seq + 1;
	tcp_send(g, host, gport, port, iss + 1, peer, TH_ACK | TH_PSH, "ping", 4);
	if (!wait_fd(listener, POLLIN))
		return failed(g, "the host listener saw no connection");
	int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	char buf[8] = { 0 };
	if (c < 0 || !wait_fd(c, POLLIN) || read(c, buf, sizeof(buf)) != 4 || memcmp(buf, "ping", 4))
		return failed(g, "the host did not read \"ping\"");
	if (write(c, "pong", 4) != 4)
		return failed(g, "host write failed");
	struct tcp_want data = { port, gport, TH_ACK, 4 };
	if (!guest_recv(g, &p, is_tcp, &data) || memcmp(p.data, "pong", 4) != 0)
		return failed(g, "the guest did not receive \"pong\"");
	tcp_send(g, host, gport, port, iss + 5, p.seq + 4, TH_ACK, NULL, 0);
	close(c);
	return true;
}

/* What answers a SYN: a SYN-ACK, a RST, or an ICMP error. */
static bool is_answer_to_syn(const struct pkt *p, const void *arg)
{
	const struct tcp_want *w = arg;
	if (p->proto == 1)
		return true;
	return p->proto == 6 && p->sport == w->sport && p->dport == w->dport &&
	       (p->flags & (TH_RST | TH_SYN));
}

/* Guest -> 10.0.2.2:PORT without host_loopback: refused, never reaching the host's listener. */
static bool scenario_tcp_out_refused(struct guest *g, int listener, uint16_t port)
{
	uint32_t host;
	inet_pton(AF_INET, NET_SLIRP_HOST, &host);
	const uint16_t gport = 40001;
	tcp_send(g, host, gport, port, 1000, 0, TH_SYN, NULL, 0);
	struct pkt p;
	struct tcp_want answer = { port, gport, 0, 0 };
	if (!guest_recv(g, &p, is_answer_to_syn, &answer))
		return false;
	if (p.proto == 6 && (p.flags & TH_SYN))
		return failed(g, "10.0.2.2 accepted a connection to the host's loopback");
	struct pollfd pfd = { .fd = listener, .events = POLLIN };
	if (poll(&pfd, 1, 200) != 0)
		return failed(g, "the host's loopback listener saw a connection");
	return true;
}

/* Host 127.0.0.1:HOSTPORT -> (hostfwd) -> guest port 8080. */
static bool scenario_hostfwd(struct guest *g, uint16_t host_port)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(host_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		return failed(g, "cannot connect to the host forward");
	bool ok = false;
	struct pkt p;
	struct tcp_want syn = { 0, GUEST_FWD_PORT, TH_SYN, 0 };
	if (!guest_recv(g, &p, is_tcp, &syn))
		goto out;
	uint32_t from = p.src, iss = 5000, peer = p.seq + 1;
	uint16_t sport = p.sport;
	tcp_send(g, from, GUEST_FWD_PORT, sport, iss, peer, TH_SYN | TH_ACK, NULL, 0);
	if (write(c, "hello", 5) != 5) {
		failed(g, "host write failed");
		goto out;
	}
	struct tcp_want data = { sport, GUEST_FWD_PORT, TH_ACK, 5 };
	if (!guest_recv(g, &p, is_tcp, &data) || memcmp(p.data, "hello", 5) != 0) {
		failed(g, "the guest did not receive \"hello\"");
		goto out;
	}
	tcp_send(g, from, GUEST_FWD_PORT, sport, iss + 1, p.seq + 5, TH_ACK | TH_PSH, "world", 5);
	char buf[8] = { 0 };
	if (!wait_fd(c, POLLIN) || read(c, buf, sizeof(buf)) != 5 || memcmp(buf, "world", 5) != 0) {
		failed(g, "the host did not read \"world\"");
		goto out;
	}
	ok = true;
out:
	close(c);
	return ok;
}

/* ---- the back end under test ---- */

/* A free loopback port for the forward (bound and released: a small race). */
static uint16_t free_port(void)
{
	uint16_t port = 0;
	int s = listen_loopback(&port);
	close(s);
	return port;
}

struct world {
	struct guest g;
	int listener;
	uint16_t listen_port, fwd_port;
};

static bool world_open(struct world *w, bool start, bool host_loopback)
{
	memset(w, 0, sizeof(*w));
	w->g.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	w->listener = listen_loopback(&w->listen_port);
	w->fwd_port = free_port();
	struct net_slirp_config cfg = { .nfwd = 1, .host_loopback = host_loopback };
	cfg.fwd[0] = (struct net_hostfwd){ .host_addr.s_addr = htonl(INADDR_LOOPBACK),
					   .host_port = w->fwd_port, .guest_port = GUEST_FWD_PORT };
	w->g.nb = net_slirp_create(&cfg);
	if (w->g.wake_fd < 0 || w->listener < 0 || !w->g.nb)
		return false;
	w->g.nb->wake = wake;
	w->g.nb->wake_ctx = &w->g;
	return !start || w->g.nb->ops->start(w->g.nb);
}

static void world_close(struct world *w)
{
	if (w->g.nb)
		w->g.nb->ops->destroy(w->g.nb);
	close(w->listener);
	close(w->g.wake_fd);
}

static bool all_scenarios(struct world *w)
{
	return scenario_dhcp(&w->g) && scenario_tcp_out(&w->g, w->listener, w->listen_port) &&
	       scenario_hostfwd(&w->g, w->fwd_port);
}

/* The default: the host's loopback out of reach, host forwards still in. */
static bool all_scenarios_isolated(struct world *w)
{
	return scenario_dhcp(&w->g) &&
	       scenario_tcp_out_refused(&w->g, w->listener, w->listen_port) &&
	       scenario_hostfwd(&w->g, w->fwd_port);
}

static void test_dhcp_offer(void **state)
{
	(void)state;
	struct world w;
	assert_true(world_open(&w, true, false));
	assert_int_equal(w.g.nb->offloads, 0); /* slirp finishes nothing for the guest */
	if (!scenario_dhcp(&w.g))
		fail_msg("%s", w.g.why);
	world_close(&w);
}

static void test_tcp_to_host_loopback(void **state)
{
	(void)state;
	struct world w;
	assert_true(world_open(&w, true, true));
	if (!scenario_dhcp(&w.g) || !scenario_tcp_out(&w.g, w.listener, w.listen_port))
		fail_msg("%s", w.g.why);
	world_close(&w);
}

static void test_host_loopback_off_by_default(void **state)
{
	(void)state;
	struct world w;
	assert_true(world_open(&w, true, false));
	if (!all_scenarios_isolated(&w))
		fail_msg("%s", w.g.why);
	world_close(&w);
}

static void test_hostfwd_reaches_guest(void **state)
{
	(void)state;
	struct world w;
	assert_true(world_open(&w, true, false));
	if (!scenario_dhcp(&w.g) || !scenario_hostfwd(&w.g, w.fwd_port))
		fail_msg("%s", w.g.why);
	world_close(&w);
}

/* An unfragmented 8-byte UDP datagram "whole-dg" to 10.0.2.2:port. */
static void udp_whole(struct guest *g, uint16_t port)
{
	uint8_t f[64] = { 0 };
	uint32_t host;
	inet_pton(AF_INET, NET_SLIRP_HOST, &host);
	uint8_t *l4 = f + 34;
	put16(l4, 5555);
	put16(l4 + 2, port);
	put16(l4 + 4, 16);
	memcpy(l4 + 8, "whole-dg", 8);
	guest_send(g, f, ip_frame(g, f, g->gw_mac, g->ip, host, 17, 16));
}

/* A UDP datagram in IPv4 fragments from the guest to 10.0.2.2:port: `first`
 * carries bytes [0, 16) of the datagram (UDP header and 8 data bytes),
 * `last` bytes [16, 24). UDP checksum 0 (none). */
static void udp_fragment(struct guest *g, uint16_t port, uint16_t id, bool first)
{
	uint8_t f[64] = { 0 };
	uint32_t host;
	inet_pton(AF_INET, NET_SLIRP_HOST, &host);
	uint8_t *l4 = f + 34;
	size_t n = first ? 16 : 8;
	if (first) {
		put16(l4, 5555);
		put16(l4 + 2, port);
		put16(l4 + 4, 24);
		memcpy(l4 + 8, "frag-one", 8);
	} else {
		memcpy(l4, "frag-two", 8);
	}
	ip_frame(g, f, g->gw_mac, g->ip, host, 17, n);
	uint8_t *ip = f + 14;
	put16(ip + 4, id);
	put16(ip + 6, first ? 0x2000 : 16 / 8); /* MF and offset 0, or offset 2 (x8 bytes) */
	put16(ip + 10, 0);
	put16(ip + 10, fold(sum16(0, ip, 20)));
	guest_send(g, f, 34 + n);
}

/*
 * libslirp 4.7 reads through a wild pointer on some IPv4 fragments (one
 * last fragment sent first is enough): no fragment reaches it. Without the
 * filter this test dies of that read; with it, neither fragment order gets
 * through, and a whole datagram still does.
 */
static void test_fragments_dropped(void **state)
{
	(void)state;
	struct world w;
	assert_true(world_open(&w, true, true));
	if (!scenario_dhcp(&w.g))
		fail_msg("%s", w.g.why);
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	assert_true(u >= 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		    getsockname(u, (struct sockaddr *)&a, &alen) == 0);
	uint16_t port = ntohs(a.sin_port);
	udp_fragment(&w.g, port, 0x0101, false); /* a last fragment first */
	udp_fragment(&w.g, port, 0x0202, true);  /* a datagram in order */
	udp_fragment(&w.g, port, 0x0202, false);
	udp_whole(&w.g, port);
	assert_true(wait_fd(u, POLLIN));
	char got[32];
	ssize_t n = recv(u, got, sizeof(got), MSG_DONTWAIT);
	assert_int_equal(n, 8);
	assert_memory_equal(got, "whole-dg", 8);
	assert_int_equal(recv(u, got, sizeof(got), MSG_DONTWAIT), -1);
	close(u);
	world_close(&w);
}

/* A host port in use: creation fails with one line, nothing is left. */
static void test_hostfwd_port_in_use(void **state)
{
	(void)state;
	uint16_t port;
	int s = listen_loopback(&port);
	assert_true(s >= 0);
	struct net_slirp_config cfg = { .nfwd = 1 };
	cfg.fwd[0] = (struct net_hostfwd){ .host_addr.s_addr = htonl(INADDR_LOOPBACK),
					   .host_port = port, .guest_port = 22 };
	assert_null(net_slirp_create(&cfg));
	close(s);
}

/* Guest garbage: runts, truncated IP, a bogus ethertype; the stack goes on. */
static void test_garbage_frames(void **state)
{
	(void)state;
	struct world w;
	assert_true(world_open(&w, true, false));
	uint8_t junk[1514];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 31 + 3);
	const size_t lens[] = { 1, 13, 14, 20, 34, 60, 1514 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		guest_send(&w.g, junk, lens[i]);
		put16(junk + 12, 0x0800);
		guest_send(&w.g, junk, lens[i]);
		put16(junk + 12, 0x0806);
		guest_send(&w.g, junk, lens[i]);
	}
	if (!scenario_dhcp(&w.g))
		fail_msg("%s", w.g.why);
	world_close(&w);
}

/* Everything again in a child under the VMM's seccomp filter. */
static void test_under_sandbox(void **state)
{
	(void)state;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct world w;
		/* As in the VMM: the stack is made, then the filter, then its thread. */
		struct world iso;
		if (!world_open(&w, false, true) || !world_open(&iso, false, false) ||
		    !sandbox_enter_with(SANDBOX_NET_USER) || !w.g.nb->ops->start(w.g.nb) ||
		    !iso.g.nb->ops->start(iso.g.nb))
			_exit(2);
		bool ok = all_scenarios(&w);
		if (!ok)
			fprintf(stderr, "under the sandbox: %s\n", w.g.why);
		bool iso_ok = all_scenarios_isolated(&iso);
		if (!iso_ok)
			fprintf(stderr, "under the sandbox, host-loopback off: %s\n", iso.g.why);
		ok = ok && iso_ok;
		world_close(&iso);
		world_close(&w);
		_exit(ok ? 0 : 3);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	log_init("test-net-slirp", LOG_LEVEL_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dhcp_offer),
		cmocka_unit_test(test_tcp_to_host_loopback),
		cmocka_unit_test(test_host_loopback_off_by_default),
		cmocka_unit_test(test_hostfwd_reaches_guest),
		cmocka_unit_test(test_hostfwd_port_in_use),
		cmocka_unit_test(test_garbage_frames),
		cmocka_unit_test(test_fragments_dropped),
		cmocka_unit_test(test_under_sandbox),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * libFuzzer target: the user-mode network back end (src/net/slirp.c) and
 * the libslirp stack behind it, fed guest frames (Ethernet, ARP, IPv4,
 * TCP, UDP, ICMP, DHCP, DNS) through its send() as virtio-net hands them
 * over, with the frames it has for the guest pulled through peek()/pop().
 * A fresh stack per input, destroyed at the end, so that leaks show up
 * (memory through LeakSanitizer, sockets by counting this process's open
 * descriptors), and nothing carries over between inputs.
 *
 * No real traffic leaves the host: this file defines connect(), sendto()
 * and sendmsg(), which libslirp's calls resolve to (the executable's
 * symbols come first), and refuses every destination but the host's
 * loopback, and DNS even there (a local resolver would ask the internet).
 * The slirp thread is never started, so sockets are not polled and timers
 * do not run: what is fuzzed is the frame path from the guest, each frame
 * handled synchronously in slirp_input().
 *
 * Input layout:
 *   byte 0      bit 0: host_loopback (the guest may reach 127.0.0.1 at
 *               10.0.2.2), bit 1: one host forward (TCP 127.0.0.1:0 ->
 *               guest 8080, a port the kernel picks)
 *   then records, until the input ends:
 *     byte      flags: bit 0 fix the IPv4 header checksum, bit 1 fix the
 *               TCP/UDP/ICMP checksum, bit 2 set the IPv4 total length to
 *               the frame's, bit 3 leave the back end's frames queued
 *               (else all are pulled after this frame), bit 4 hand the
 *               frame over in two iovecs split in the middle
 *     2 bytes   frame length (LE), then the Ethernet frame (no virtio-net
 *               header: the harness adds the all-zero one slirp expects)
 * The fix-ups let the fuzzer's mutations pass slirp's checksum tests; with
 * the flags clear, the frame goes in exactly as written.
 *
 * Checks (abort on failure): ASan/UBSan/LSan; every frame the back end
 * offers has its all-zero header, an Ethernet frame after it, and a length
 * within NET_MAX_FRAME; destroying the back end closes every descriptor
 * it opened.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "net/net.h"

#define ETH_HLEN      14
#define REC_HDR       3
#define F_IP_CSUM     1u
#define F_L4_CSUM     2u
#define F_IP_LEN      4u
#define F_KEEP_QUEUED 8u
#define F_SPLIT       16u

/* ---- no traffic beyond the host's loopback ---- */

static bool destination_allowed(const struct sockaddr *sa, socklen_t len)
{
	if (!sa)
		return true; /* a connected socket: its connect() was checked */
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127 && ntohs(in->sin_port) != 53;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) && ntohs(in6->sin6_port) != 53;
	}
	return false;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	if (!destination_allowed(sa, len)) {
		errno = ENETUNREACH;
		return -1;
	}
	return (int)syscall(SYS_connect, fd, sa, len);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa, socklen_t len)
{
	if (!destination_allowed(sa, len)) {
		errno = ENETUNREACH;
		return -1;
	}
	return syscall(SYS_sendto, fd, buf, n, flags, sa, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (!destination_allowed(msg->msg_name, msg->msg_namelen)) {
		errno = ENETUNREACH;
		return -1;
	}
	return syscall(SYS_sendmsg, fd, msg, flags);
}

/* ---- checksum fix-ups ---- */

static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Where the checksum field of the IPv4 payload's protocol sits, or -1. */
static int l4_csum_offset(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP: return 16;
	case IPPROTO_UDP: return 6;
	case IPPROTO_ICMP: return 2;
	default: return -1;
	}
}

static void fix_ipv4(uint8_t *f, size_t len, unsigned flags)
{
	if (len < ETH_HLEN + 20 || f[12] != 0x08 || f[13] != 0x00)
		return;
	uint8_t *ip = f + ETH_HLEN;
	size_t room = len - ETH_HLEN, ihl = (size_t)(ip[0] & 15) * 4;
	if (ihl < 20 || ihl > room)
		return;
	if (flags & F_IP_LEN)
		put16(ip + 2, (uint16_t)(room > 0xffff ? 0xffff : room));
	size_t total = (size_t)(ip[2] << 8 | ip[3]);
	if (total > room)
		total = room;
	int at = l4_csum_offset(ip[9]);
	bool first_fragment = ((ip[6] & 0x1f) | ip[7]) == 0;
	if ((flags & F_L4_CSUM) && at >= 0 && first_fragment && total >= ihl + (size_t)at + 2) {
		uint8_t *l4 = ip + ihl;
		size_t l4len = total - ihl;
		put16(l4 + at, 0);
		uint32_t sum = 0;
		if (ip[9] != IPPROTO_ICMP) { /* the pseudo-header */
			sum = sum16(sum, ip + 12, 8);
			sum += ip[9] + (uint32_t)l4len;
		}
		put16(l4 + at, fold(sum16(sum, l4, l4len)));
	}
	if (flags & F_IP_CSUM) {
		put16(ip + 10, 0);
		put16(ip + 10, fold(sum16(0, ip, ihl)));
	}
}

/* ---- the back end ---- */

/* Pulls every frame the back end holds for the guest, checking each. */
static void drain(struct net_backend *nb)
{
	size_t len;
	const uint8_t *f;
	while ((f = nb->ops->peek(nb, &len)) != NULL) {
		if (len < NET_HDR_LEN + ETH_HLEN || len > NET_HDR_LEN + NET_MAX_FRAME)
			abort();
		for (size_t i = 0; i < NET_HDR_LEN; i++)
			if (f[i])
				abort(); /* no offloads: the header is all zeros */
		volatile uint8_t sink = 0;
		for (size_t i = 0; i < len; i++)
			sink ^= f[i]; /* ASan checks every byte */
		nb->ops->pop(nb);
	}
}

static void send_frame(struct net_backend *nb, uint8_t *frame, size_t len, unsigned flags)
{
	static uint8_t hdr[NET_HDR_LEN];
	struct iovec iov[3] = { { hdr, sizeof(hdr) } };
	unsigned n = 1;
	if ((flags & F_SPLIT) && len >= 2) {
		iov[n++] = (struct iovec){ frame, len / 2 };
		iov[n++] = (struct iovec){ frame + len / 2, len - len / 2 };
	} else {
		iov[n++] = (struct iovec){ frame, len };
	}
	nb->ops->send(nb, iov, n, NET_HDR_LEN + len);
}

/* Descriptors open in this process (those of /proc/self/fd, less its own). */
static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		abort();
	unsigned n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static struct net_backend *backend_for(uint8_t config)
{
	struct net_slirp_config cfg = { .host_loopback = config & 1 };
	if (config & 2) {
		cfg.nfwd = 1;
		cfg.fwd[0] = (struct net_hostfwd){ .host_addr.s_addr = htonl(INADDR_LOOPBACK),
						   .host_port = 0, .guest_port = 8080 };
	}
	return net_slirp_create(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *frame;
	if (!frame) {
		log_init("fuzz-net-slirp", LOG_LEVEL_ERROR);
		log_set_level((enum log_level)-1);
		frame = malloc(NET_MAX_FRAME);
		if (!frame)
			abort();
	}
	if (size < 1)
		return 0;
	unsigned fds_before = open_fds();
	struct net_backend *nb = backend_for(data[0]);
	if (!nb && (data[0] & 2))
		return 0; /* no loopback to bind the forward on here: not slirp's fault */
	if (!nb)
		abort();
	size_t at = 1;
	while (size - at >= REC_HDR) {
		unsigned flags = data[at];
		size_t len = (size_t)(data[at + 1] | data[at + 2] << 8);
		at += REC_HDR;
		if (len > size - at)
			len = size - at;
		memcpy(frame, data + at, len);
		at += len;
		fix_ipv4(frame, len, flags);
		/* Fragments too: src/net/slirp.c keeps every IPv4 fragment from
		 * libslirp 4.7, which crashed on them (test_net_slirp.c:
		 * test_fragments_dropped). */
		send_frame(nb, frame, len, flags);
		if (!(flags & F_KEEP_QUEUED))
			drain(nb);
	}
	drain(nb);
	nb->ops->destroy(nb);
	if (open_fds() != fds_before)
		abort(); /* a socket (or eventfd) outlived the stack */
	return 0;
}

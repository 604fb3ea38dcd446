/*
 * Network back ends: where the frames of a guest NIC (dev/virtio-net) go
 * and come from. One file per back end, each with a `struct net_backend_ops`
 * table: user-mode networking through libslirp (net/slirp.c) and a host tap
 * interface (net/tap.c).
 *
 * Every frame crossing this interface carries the 12-byte virtio-net header
 * (struct virtio_net_hdr_v1, num_buffers included) in front of the Ethernet
 * frame: it is what a tap with IFF_VNET_HDR reads and writes, so the tap
 * path needs no conversion; slirp adds and drops an all-zero one.
 *
 * The NIC pulls received frames (peek, then pop once the frame is in guest
 * buffers) instead of having them pushed, because only the NIC knows when
 * the guest has posted receive buffers. A back end with a frame ready calls
 * `wake`, which may run on any thread and must only schedule a pull (the
 * glue in vmm/ turns it into a kick of the receive queue on the I/O
 * thread); it must not call into the NIC directly.
 *
 * Threads: send, peek, pop and set_offloads are called by the NIC under its
 * transport's lock (the I/O thread, or a vCPU thread when a kick arrives
 * without an eventfd); each back end guards its own state against its own
 * event handlers.
 */
#ifndef SHOJI_NET_NET_H
#define SHOJI_NET_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* struct virtio_net_hdr_v1 (virtio 1.2, 5.1.6): what precedes every frame. */
#define NET_HDR_LEN 12u
#define NET_HDR_FLAGS       0
#define NET_HDR_GSO_TYPE    1
#define NET_HDR_HDR_LEN     2
#define NET_HDR_GSO_SIZE    4
#define NET_HDR_CSUM_START  6
#define NET_HDR_CSUM_OFFSET 8
#define NET_HDR_NUM_BUFFERS 10

/* Ethernet header, and the largest frame after the virtio header: a 64 KiB
 * TSO segment plus Ethernet and VLAN headers. */
#define NET_ETH_HLEN  14u
#define NET_MAX_FRAME (65535u + NET_ETH_HLEN + 4u)

/* Offloads a back end can handle, in both directions (the TUN_F_* set). */
#define NET_OFFLOAD_CSUM 1u   /* partial checksums (NEEDS_CSUM) */
#define NET_OFFLOAD_TSO4 2u   /* TCP segmentation, IPv4 */
#define NET_OFFLOAD_TSO6 4u   /* TCP segmentation, IPv6 */

/*
 * How a back end watches its file descriptors: the VMM hands in its I/O
 * thread (vmm/net-host.c), a test hands in its own loop. Callbacks run on
 * that loop's thread; `events` are epoll bits (EPOLLIN, EPOLLOUT, ...).
 */
typedef void (*net_event_fn)(void *arg, uint32_t events);
struct net_poller {
	void *(*watch)(void *ctx, int fd, uint32_t events, net_event_fn fn, void *arg);
	bool (*set_events)(void *watch, uint32_t events);
	void (*unwatch)(void *watch);
	void *ctx;
};

struct net_backend;

struct net_backend_ops {
	const char *kind; /* "user", "tap": for log lines */
	/*
	 * Sends one frame from the guest: iov holds the header (already checked
	 * by the NIC, and a copy the guest cannot change) and then the frame,
	 * `len` bytes in all. A frame the host cannot take is dropped.
	 */
	void (*send)(struct net_backend *nb, const struct iovec *iov, unsigned n, size_t len);
	/*
	 * The next frame for the guest (header first), or NULL; it stays until
	 * pop(). The NIC may write the header's num_buffers field in place.
	 */
	uint8_t *(*peek)(struct net_backend *nb, size_t *len);
	void (*pop)(struct net_backend *nb);
	/* The offloads (NET_OFFLOAD_*) the guest accepts on receive. */
	bool (*set_offloads)(struct net_backend *nb, unsigned offloads);
	/* Starts event handling (threads, watches); after the sandbox is in. */
	bool (*start)(struct net_backend *nb);
	void (*destroy)(struct net_backend *nb);
};

struct net_backend {
	const struct net_backend_ops *ops;
	unsigned offloads;            /* NET_OFFLOAD_* the back end supports */
	void (*wake)(void *ctx);      /* a frame is ready to be pulled; any thread */
	void *wake_ctx;
};

/* ---- user-mode networking (net/slirp.c) ---- */

#define NET_SLIRP_MAX_FWD 16

struct net_hostfwd {
	bool udp;
	struct in_addr host_addr;
	uint16_t host_port;
	uint16_t guest_port;
};

struct net_slirp_config {
	unsigned nfwd;
	struct net_hostfwd fwd[NET_SLIRP_MAX_FWD];
	/*
	 * Whether the guest may reach the host's loopback (127.0.0.1, where
	 * local-only services listen) through the gateway 10.0.2.2. Off by
	 * default: such services trust whoever can connect, and a guest is
	 * not the host's user. Host forwards work either way.
	 */
	bool host_loopback;
};

/* The guest network slirp serves: 10.0.2.0/24, the host (gateway) at .2,
 * DNS at .3, and DHCP leases from .15, which host forwards reach. */
#define NET_SLIRP_NETWORK  "10.0.2.0"
#define NET_SLIRP_HOST     "10.0.2.2"
#define NET_SLIRP_DNS      "10.0.2.3"
#define NET_SLIRP_GUEST    "10.0.2.15"
#define NET_SLIRP_MTU      1500u

/*
 * Creates the stack and binds every host forward (so a port in use fails
 * here, in one line). No thread runs until start().
 */
struct net_backend *net_slirp_create(const struct net_slirp_config *cfg);

/* ---- tap (net/tap.c) ---- */

/*
 * Attaches to tap interface `name` (created if the caller may, e.g. root or
 * CAP_NET_ADMIN; an existing persistent tap owned by the user works without
 * privileges) with IFF_VNET_HDR. Offloads are probed with TUNSETOFFLOAD.
 */
struct net_backend *net_tap_create(const char *name, const struct net_poller *poller);

#endif

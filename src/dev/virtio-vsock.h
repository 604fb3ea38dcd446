/*
 * virtio-vsock (virtio 1.2, section 5.10): stream sockets between the guest
 * (its CID from --vsock cid=N) and the host (CID 2), on three queues: rx
 * (device to driver), tx (driver to device) and event (unused: we never
 * migrate). This file is the protocol: packet parsing, connection state,
 * credit-based flow control, shutdown and reset. What a connection is on
 * the host (vmm/vsock-host: Unix sockets) is behind `struct vsock_backend`,
 * so the model runs in tests without KVM or sockets.
 *
 * Memory the VMM spends is bounded whatever the guest does:
 *   - host to guest: bytes go straight from the host socket into the
 *     guest's rx buffers, and only as many as the guest's credit allows;
 *     without credit the device stops reading, so the host writer blocks;
 *   - guest to host: bytes go straight to the host socket; what the socket
 *     does not take waits in a per-connection ring of at most
 *     VSOCK_CONN_BUF bytes, which is the buf_alloc we advertise, so an
 *     honest driver never overflows it and a lying one gets RST. The ring
 *     is allocated when bytes wait and grows with them (doubling from
 *     VSOCK_BUF_MIN), and all rings of a VM together hold at most
 *     VSOCK_BUFFER_MAX bytes: a connection whose bytes would not fit is
 *     reset, as a host reader that stopped reading leaves no better choice;
 *   - at most VSOCK_MAX_CONNS connections and VSOCK_RST_BACKLOG queued
 *     resets for packets that belong to no connection.
 * So the VMM buffers at most VSOCK_BUFFER_MAX bytes per VM however many
 * connections the guest opens (it was VSOCK_MAX_CONNS * VSOCK_CONN_BUF,
 * 256 MiB); virtio_vsock_get_stats() reports what it holds.
 *
 * Threads: the transport calls the ops under its lock (vCPU threads for
 * status writes, the I/O thread for kicks); the host side calls the
 * virtio_vsock_host_* functions from the I/O thread. A device mutex
 * serialises both. Backend callbacks run with that mutex held and must not
 * call back into the device. Work for the rx queue found outside the
 * transport's lock is handed over through backend->wake(), which the VMM
 * turns into a kick of the rx queue (virtio_pci_kick), so the rx queue is
 * only ever touched under the transport's lock.
 */
#ifndef SHOJI_DEV_VIRTIO_VSOCK_H
#define SHOJI_DEV_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "dev/virtio.h"

#define VIRTIO_VSOCK_QUEUE_RX    0
#define VIRTIO_VSOCK_QUEUE_TX    1
#define VIRTIO_VSOCK_QUEUE_EVENT 2

#define VSOCK_CID_HOST           2u
/* The guest's CID: 3 .. 0xfffffffe (0-2 are reserved, -1 is "any"). */
#define VSOCK_CID_MIN            3u
#define VSOCK_CID_MAX            0xfffffffeu

/* struct virtio_vsock_hdr (5.10.6), little-endian, packed. */
#define VSOCK_HDR_BYTES          44u
#define VSOCK_HDR_SRC_CID        0
#define VSOCK_HDR_DST_CID        8
#define VSOCK_HDR_SRC_PORT       16
#define VSOCK_HDR_DST_PORT       20
#define VSOCK_HDR_LEN            24
#define VSOCK_HDR_TYPE           28
#define VSOCK_HDR_OP             30
#define VSOCK_HDR_FLAGS          32
#define VSOCK_HDR_BUF_ALLOC      36
#define VSOCK_HDR_FWD_CNT        40

#define VSOCK_TYPE_STREAM        1

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive no more / send no more. */
#define VSOCK_SHUTDOWN_RCV       1u
#define VSOCK_SHUTDOWN_SEND      2u

#define VSOCK_MAX_CONNS          1024u
/*
 * Our buf_alloc per connection, Linux's default (VIRTIO_VSOCK_DEFAULT_BUF_SIZE):
 * with 64 KiB a driver had one 64 KiB packet in flight and waited for a
 * credit update after each (bench/README.md, bench/vsock).
 */
#define VSOCK_CONN_BUF           (256u * 1024)
#define VSOCK_MAX_PKT_DATA       (64u * 1024)  /* data bytes per packet we send */
/* A connection's first ring; it doubles up to VSOCK_CONN_BUF (a power of two). */
#define VSOCK_BUF_MIN            (4u * 1024)
/* The rings of all connections of one VM: 128 stalled connections at full credit. */
#define VSOCK_BUFFER_MAX         (32u << 20)
#define VSOCK_RST_BACKLOG        256u
/* Ports we give host-initiated connections start here (as Firecracker's). */
#define VSOCK_LOCAL_PORT_BASE    (1u << 30)

#define VSOCK_CONFIG_SIZE        8  /* le64 guest_cid */

/* What the device wants to hear about a host connection. */
#define VSOCK_WANT_READ          1u
#define VSOCK_WANT_WRITE         2u
/* What the host reports (virtio_vsock_host_ready). */
#define VSOCK_EV_READ            1u
#define VSOCK_EV_WRITE           2u
#define VSOCK_EV_HUP             4u

/*
 * The host side. `conn` is what connect() returned or what was passed to
 * virtio_vsock_host_connect(); after close() the device never names it
 * again.
 */
struct vsock_backend {
	/*
	 * The guest connects to host port `port`; NULL refuses (RST). With
	 * *later set, the host end is not there yet (its listener's backlog is
	 * full): the device answers once the backend calls
	 * virtio_vsock_host_accepted().
	 */
	void *(*connect)(void *ctx, uint32_t port, uint32_t id, bool *later);
	/* The guest accepted a host-initiated connection; it sees us as `local_port`. */
	void (*established)(void *ctx, void *conn, uint32_t local_port);
	/* Bytes written / read, or -errno (-EAGAIN: not now). recv: 0 is EOF. */
	ssize_t (*send)(void *ctx, void *conn, const struct iovec *iov, unsigned n);
	ssize_t (*recv)(void *ctx, void *conn, const struct iovec *iov, unsigned n);
	/* Readiness the device waits for now (VSOCK_WANT_*; 0: nothing). */
	void (*want)(void *ctx, void *conn, unsigned want);
	/* The guest will send no more: the host peer should see EOF. */
	void (*shutdown_write)(void *ctx, void *conn);
	/*
	 * A host-initiated connection ends before the guest accepted it; `why`
	 * is a short reason for the host program ("connection refused": the
	 * guest answered RST). close() follows. May be NULL.
	 */
	void (*refused)(void *ctx, void *conn, const char *why);
	/* The connection is over: the host peer sees EOF or a reset. */
	void (*close)(void *ctx, void *conn);
	/* Called without the device lock: run the rx queue soon (a kick). */
	void (*wake)(void *ctx, struct virtio_dev *vd);
	void *ctx;
};

struct virtio_vsock_stats {
	unsigned conns;
	uint64_t buffered;       /* guest-to-host bytes waiting for the host */
	uint64_t buffered_peak;
	uint64_t buffer_bytes;   /* heap their rings hold (<= VSOCK_BUFFER_MAX) */
	unsigned rst_queued;
};

struct virtio_vsock;

extern const struct virtio_device_ops virtio_vsock_ops;

/* NULL (logged) for a CID outside VSOCK_CID_MIN..VSOCK_CID_MAX. */
struct virtio_vsock *virtio_vsock_create(uint64_t guest_cid, const struct vsock_backend *be);
/* Closes every connection (backend->close) and frees the device. NULL is a no-op. */
void virtio_vsock_destroy(struct virtio_vsock *vs);

/* Why virtio_vsock_host_connect() refused, and why backend->refused() is called. */
#define VSOCK_WHY_NO_DRIVER      "no vsock driver in the guest"
#define VSOCK_WHY_TOO_MANY       "too many connections"
#define VSOCK_WHY_REFUSED        "connection refused"
#define VSOCK_WHY_RESET          "connection reset by the guest"

/*
 * A host program asks for the guest's `port`. Returns the connection's id
 * (never 0), or 0 when the driver is not running or the table is full, with
 * the reason in *why (VSOCK_WHY_*). The guest answers later:
 * backend->established(), or backend->refused() and backend->close().
 */
uint32_t virtio_vsock_host_connect(struct virtio_vsock *vs, uint32_t port, void *conn,
				   const char **why);
/*
 * A connection connect() put off is accepted by the host (ok: the guest
 * gets RESPONSE) or given up (the guest gets RST). Stale ids are ignored.
 */
void virtio_vsock_host_accepted(struct virtio_vsock *vs, uint32_t id, bool ok);
/* The host connection `id` is ready (VSOCK_EV_*). Stale ids are ignored. */
void virtio_vsock_host_ready(struct virtio_vsock *vs, uint32_t id, unsigned events);

void virtio_vsock_get_stats(struct virtio_vsock *vs, struct virtio_vsock_stats *st);

#endif

/*
 * virtio-net (virtio 1.2, section 5.1): a guest NIC with one receive and
 * one transmit queue, attached to a network back end (net/net.h). The
 * transport (dev/virtio-pci.c) drives it through virtio_net_ops.
 *
 * Offered: MAC, STATUS (link always up), MRG_RXBUF, EVENT_IDX,
 * INDIRECT_DESC, and the checksum and segmentation offloads (CSUM,
 * GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6) only when the back end handles
 * them (a tap with a vnet header does; slirp does not, so its guests
 * compute their own checksums).
 */
#ifndef SHOJI_DEV_VIRTIO_NET_H
#define SHOJI_DEV_VIRTIO_NET_H

#include <stdint.h>

#include "dev/virtio.h"
#include "hv/mem.h"
#include "net/net.h"

/* Feature bits (virtio 1.2, 5.1.3). */
#define VIRTIO_NET_F_CSUM       0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU        3
#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN  9
#define VIRTIO_NET_F_GUEST_UFO  10
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_HOST_ECN   13
#define VIRTIO_NET_F_HOST_UFO   14
#define VIRTIO_NET_F_MRG_RXBUF  15
#define VIRTIO_NET_F_STATUS     16
#define VIRTIO_NET_F_CTRL_VQ    17

/* Header flags and GSO types (5.1.6). */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1u
#define VIRTIO_NET_HDR_F_DATA_VALID 2u
#define VIRTIO_NET_HDR_GSO_NONE  0u
#define VIRTIO_NET_HDR_GSO_TCPV4 1u
#define VIRTIO_NET_HDR_GSO_UDP   3u
#define VIRTIO_NET_HDR_GSO_TCPV6 4u
#define VIRTIO_NET_HDR_GSO_ECN   0x80u

#define VIRTIO_NET_S_LINK_UP 1u

#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1
#define VIRTIO_NET_QUEUE_SIZE 256

/* Device configuration: mac[6], status, max_virtqueue_pairs. */
#define VIRTIO_NET_CFG_MAC      0
#define VIRTIO_NET_CFG_STATUS   6
#define VIRTIO_NET_CFG_MAX_VQP  8
#define VIRTIO_NET_CONFIG_SIZE  10

struct virtio_net;

extern const struct virtio_device_ops virtio_net_ops;

/*
 * A NIC with address `mac` on back end `nb` (which the NIC does not own).
 * NULL (logged) when out of memory.
 */
struct virtio_net *virtio_net_create(const uint8_t mac[6], struct net_backend *nb,
				     const struct guest_mem *mem);
void virtio_net_destroy(struct virtio_net *net);

/*
 * The transport the device was last activated on, or NULL before the first
 * activation: the glue in vmm/ kicks its receive queue when the back end
 * has frames (a back end may not call into the device itself). Safe to
 * call from any thread.
 */
struct virtio_dev *virtio_net_transport(struct virtio_net *net);

/* Counters, for tests and log lines. */
struct virtio_net_stats {
	uint64_t tx_frames, tx_dropped;
	uint64_t rx_frames, rx_dropped;
};
struct virtio_net_stats virtio_net_stats(const struct virtio_net *net);

#endif

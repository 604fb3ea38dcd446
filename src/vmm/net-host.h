/*
 * The machine's NICs: for each --net, a back end (net/slirp.c or
 * net/tap.c), a virtio-net device on the PCI bus, and the wiring between
 * them on the I/O thread. A back end with frames for the guest signals an
 * eventfd; the I/O thread then kicks the NIC's receive queue through the
 * transport (virtio_pci_kick), so the NIC pulls frames under the
 * transport's lock like any other queue work.
 */
#ifndef SHOJI_VMM_NET_HOST_H
#define SHOJI_VMM_NET_HOST_H

#include <stdbool.h>

#include "hv/mem.h"
#include "vmm/iothread.h"
#include "vmm/net-option.h"
#include "vmm/virtio-host.h"

struct net_host;

/*
 * Creates every back end (binding host forwards, attaching taps) and puts
 * the NICs on the bus. False (logged, one line naming the option) on
 * failure; *out is set either way, for net_host_destroy() to release what
 * was made (NICs already on the bus stay valid until then).
 */
bool net_host_create(const struct net_option *opts, unsigned n, struct virtio_host *vh,
		     struct iothread *io, const struct guest_mem *mem, struct net_host **out);
/* Starts the back ends' event handling: after the sandbox is in. */
bool net_host_start(struct net_host *nh);
/*
 * After iothread_destroy() (which freed the watches) and
 * virtio_host_destroy() (which reset the NICs). Accepts NULL.
 */
void net_host_destroy(struct net_host *nh);

#endif

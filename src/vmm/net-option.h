/*
 * The --net option of shoji-vmm:
 *
 *   --net user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
 *             [,host-loopback=on|off][,mac=M]
 *   --net tap=NAME[,mac=M]
 *
 * parsed into a NIC definition for dev/virtio-net and a back end in net/.
 * Parsing does no I/O: a port in use or a missing tap is found when the
 * back end is created, before the VM runs.
 *
 * A host forward's HOSTADDR defaults to 127.0.0.1 (only this host can
 * connect; give 0.0.0.0 to accept others) and GUESTADDR to 10.0.2.15, the
 * guest's DHCP address, which is the only one accepted.
 *
 * host-loopback=on lets the guest reach services on the host's loopback
 * (127.0.0.1) through its gateway 10.0.2.2; the default, off, keeps them
 * out of its reach (they trust any local client). Host forwards work
 * either way.
 *
 * Without mac=, NIC number i (0-based, in command-line order) gets
 * 02:73:68:6f:00:i ("sho" after the locally administered unicast prefix
 * 02): the same on every run, so a DHCP server keeps handing out the same
 * lease. Two VMs on one bridge need distinct mac= values.
 */
#ifndef SHOJI_VMM_NET_OPTION_H
#define SHOJI_VMM_NET_OPTION_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

enum net_kind {
	NET_USER,
	NET_TAP,
};

struct net_option {
	enum net_kind kind;
	char tap[IFNAMSIZ];
	uint8_t mac[6];
	struct net_slirp_config slirp;  /* host forwards, for NET_USER */
};

/*
 * Fills `out` from the option's value; `index` is the NIC's number, for the
 * default MAC. Returns false with one line in `err` naming the item at
 * fault and what is accepted.
 */
bool net_option_parse(const char *text, unsigned index, struct net_option *out, char *err,
		      size_t errlen);

#endif

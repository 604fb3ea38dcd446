/*
 * The device kinds shoji-vmm can add to a machine, one line each in
 * VMM_DEVICES below. A kind is one file in vmm/ that defines a
 * `const struct vmm_device_kind NAME_device`: its command-line option
 * (--NAME), its lines of --help, the parser of one option value, and how
 * the machine creates, starts and destroys what the options ask for. The
 * options parser (vmm/options.c) and the machine (vmm/machine.c) walk the
 * table; neither names a device.
 *
 * Adding a device (virtio-input, virtio-gpu, ...): write vmm/NAME-device.c
 * with its kind (vmm/rng-device.c is the smallest example), add its line to
 * VMM_DEVICES (and, if its option value is a struct, the #include of the
 * header declaring it), and add the file to vmm/meson.build. Its guest side
 * is a dev/virtio-NAME.c with a struct virtio_device_ops, as before.
 */
#ifndef SHOJI_VMM_DEVICES_H
#define SHOJI_VMM_DEVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/disk-option.h"
#include "vmm/net-option.h"
#include "vmm/vsock-option.h"

struct guest_mem;
struct iothread;
struct virtio_host;
struct vmm_options;

#define VMM_MAX_DISKS 8
#define VMM_MAX_NETS  8

/*
 * X(NAME, TYPE, MOST): option --NAME, each value parsed into a TYPE, given
 * at most MOST times (1: once). struct vmm_options gets `unsigned nNAMEs`
 * and `TYPE NAMEs[MOST]` (ndisks and disks, ...).
 *
 * The order is the order in which the machine creates the devices, so the
 * order of their PCI slots, and the order of their lines in --help: a new
 * kind goes at the end, so that guests keep the slots (and the network
 * interface names) they had.
 */
#define VMM_DEVICES(X)                                   \
	X(disk, struct disk_option, VMM_MAX_DISKS)       \
	X(rng, bool, 1)                                  \
	X(vsock, struct vsock_option, 1)                 \
	X(net, struct net_option, VMM_MAX_NETS)

/* What a kind's create() gets of the machine. */
struct vmm_device_env {
	struct virtio_host *virtio;   /* virtio_host_add() puts a device on the PCI bus */
	struct iothread *io;          /* for host back ends' file descriptors */
	const struct guest_mem *mem;
};

/* What a kind's options need of the jail (vmm/jail.h) and the sandbox (vmm/sandbox.h). */
struct vmm_device_needs {
	unsigned sandbox;     /* SANDBOX_* bits */
	bool host_network;    /* the jail keeps the host's network and /etc/resolv.conf */
	const char *socket;   /* the jail keeps this socket's directory, or NULL */
};

struct vmm_device_kind {
	const char *option;   /* "disk" for --disk */
	bool has_value;       /* --disk VALUE; false for a flag such as --rng */
	const char *usage;    /* its lines of --help, each ending in \n */
	/*
	 * Parses value number `index` (0 for the first --NAME; NULL for a
	 * flag) into *out, a TYPE. False with one line in err naming the
	 * option, the value at fault and what is accepted.
	 */
	bool (*parse)(const char *value, unsigned index, void *out, char *err, size_t errlen);
	/*
	 * Creates the devices for the n (at least 1) parsed values in opts (a
	 * TYPE array) and adds them to env->virtio. Returns 0, or the exit
	 * status (vmm/exit.h) after logging one line: VMM_EXIT_USAGE when the
	 * user can fix it (an image in use, a port taken). *state is set
	 * either way, for destroy() to release what was made.
	 */
	int (*create)(const struct vmm_device_env *env, const void *opts, unsigned n, void **state);
	/* Optional: starts host-side event handling once the sandbox is in and the I/O thread runs. */
	bool (*start)(void *state);
	/* Optional: after the I/O thread is gone and before the devices are reset: drops watches. */
	void (*detach)(void *state);
	/* After the devices were reset (virtio_host_destroy()). Accepts NULL. */
	void (*destroy)(void *state);
	/* Optional: what the values need of the jail and the sandbox; adds to *needs. */
	void (*needs)(const void *opts, unsigned n, struct vmm_device_needs *needs);
};

#define VMM_DEVICE_DECLARE(name, type, most) extern const struct vmm_device_kind name##_device;
VMM_DEVICES(VMM_DEVICE_DECLARE)
#undef VMM_DEVICE_DECLARE

/* How many kinds there are: the rows of vmm_devices[]. */
#define VMM_DEVICE_ONE(name, type, most) +1
enum { VMM_NDEVICES = 0 VMM_DEVICES(VMM_DEVICE_ONE) };
#undef VMM_DEVICE_ONE

/* One row of the table: a kind and where struct vmm_options holds its values. */
struct vmm_device_slot {
	const struct vmm_device_kind *kind;
	size_t values;       /* offsetof(struct vmm_options, NAMEs) */
	size_t count;        /* offsetof(struct vmm_options, nNAMEs) */
	size_t value_size;   /* sizeof(TYPE) */
	unsigned most;
};

extern const struct vmm_device_slot vmm_devices[VMM_NDEVICES];

/* How many --NAME values o holds, and where they are (a TYPE array). */
unsigned vmm_device_count(const struct vmm_device_slot *s, const struct vmm_options *o);
const void *vmm_device_values(const struct vmm_device_slot *s, const struct vmm_options *o);

/*
 * Parses one more --NAME value into o. False with one line in err when
 * the option was given too often or its parser refused the value.
 */
bool vmm_device_parse(const struct vmm_device_slot *s, const char *value, struct vmm_options *o,
		      char *err, size_t errlen);

#endif

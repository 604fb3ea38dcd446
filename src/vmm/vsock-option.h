/*
 * The --vsock option of shoji-vmm:
 *
 *   --vsock cid=N,socket=PATH
 *
 * N is the guest's context ID (3 .. 4294967294); PATH is the Unix socket
 * host programs connect to (see vmm/vsock-host.h), short enough that
 * PATH_<port> still fits in a socket address. Parsing does no I/O.
 */
#ifndef SHOJI_VMM_VSOCK_OPTION_H
#define SHOJI_VMM_VSOCK_OPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/vsock-host.h"

struct vsock_option {
	uint32_t cid;
	char socket[VSOCK_HOST_PATH_MAX + 1];
};

/* Fills `out`; false with one line in `err` naming the key and value at fault. */
bool vsock_option_parse(const char *text, struct vsock_option *out, char *err, size_t errlen);

#endif

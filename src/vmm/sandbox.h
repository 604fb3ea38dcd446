/*
 * The seccomp allowlist of a running VMM. It is installed once the machine
 * is built (files opened, guest RAM mapped, vCPUs created) and before any
 * thread starts, so every thread inherits it. A system call outside the
 * list is a bug or an exploit: the process reports the call's number and
 * exits with status 1.
 */
#ifndef SHOJI_VMM_SANDBOX_H
#define SHOJI_VMM_SANDBOX_H

#include <stdbool.h>

/* What the VM's back ends add to the list; each entry says why. */
#define SANDBOX_NET_USER 1u   /* --net user: libslirp's sockets and resolv.conf */
#define SANDBOX_NET_TAP  2u   /* --net tap: tap I/O and offload changes */
#define SANDBOX_VSOCK    4u   /* --vsock: Unix sockets to and from host programs */

/* Installs the allowlist plus the calls the SANDBOX_* bits in `needs` ask for. */
bool sandbox_enter_with(unsigned needs);

#endif

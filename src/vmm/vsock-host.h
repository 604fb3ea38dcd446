/*
 * The host side of virtio-vsock on Unix sockets, as Firecracker does it:
 *
 *   - host to guest: a program connects to the VM's socket PATH, writes
 *     "CONNECT <port>\n" and, once the guest's listener on that port
 *     accepted, reads "OK <local-port>\n" followed by the byte stream;
 *   - guest to host: a guest connecting to CID 2 port P reaches a program
 *     listening on the Unix socket "PATH_P".
 * A host program that gets no connection reads why, one line, then EOF:
 * "ERR <why>\n" (VSOCK_WHY_* of dev/virtio-vsock.h and VSOCK_HOST_ERR_*
 * below; docs/vmm.md lists them). A guest whose connection finds no host
 * listener, or exceeds the connection bound, gets a reset; one whose host
 * program is slow to accept (a full backlog) waits instead.
 *
 * Every connection is a descriptor of the VMM, so their number is bounded
 * below RLIMIT_NOFILE (see vsock_host_start), and nothing a guest or a host
 * program does makes accept fail in a loop.
 *
 * Everything runs on the VMM's I/O thread, except the device's callbacks,
 * which may also come from a vCPU thread (a driver reset); they only touch
 * one connection's descriptor and its watch, and a connection is freed
 * through iothread_call(), after any of its callbacks in progress.
 */
#ifndef SHOJI_VMM_VSOCK_HOST_H
#define SHOJI_VMM_VSOCK_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev/virtio-vsock.h"
#include "vmm/iothread.h"

/* The longest PATH: PATH_4294967295 must fit in sun_path (108 bytes). */
#define VSOCK_HOST_PATH_MAX      (107 - 11)
/*
 * Host programs that connected but have not finished "CONNECT <port>\n";
 * more wait in the listen backlog (the kernel caps it at net.core.somaxconn).
 */
#define VSOCK_HOST_MAX_HANDSHAKE 64
#define VSOCK_HOST_BACKLOG       1024
#define VSOCK_HOST_LINE_MAX      32
/*
 * A guest's connection to PATH_P while the host program's listen backlog is
 * full waits (the guest hears nothing yet) and is retried every
 * VSOCK_HOST_RETRY_MS for up to VSOCK_HOST_ACCEPT_WAIT_MS, then reset.
 */
#define VSOCK_HOST_RETRY_MS       10
#define VSOCK_HOST_ACCEPT_WAIT_MS 5000
/*
 * Descriptors kept free, beyond those open when the host side starts, for
 * what the VMM opens later: a vCPU each (up to 254, made after the
 * devices), API and console clients, user-mode network sockets.
 */
#define VSOCK_HOST_FD_RESERVE    512

/* A host program's line must arrive this soon after it is accepted. */
#define VSOCK_HOST_HANDSHAKE_MS  5000

#define VSOCK_HOST_ERR_NOT_CONNECT "expected CONNECT <port>"
#define VSOCK_HOST_ERR_LONG_LINE   "line too long"
#define VSOCK_HOST_ERR_TIMEOUT     "no CONNECT line within 5 s"
/* Out of memory, or epoll would not watch one more descriptor. */
#define VSOCK_HOST_ERR_RESOURCES   "out of resources in the VMM"

struct vsock_host;

/*
 * A host program's handshake line of `len` bytes, its newline removed and a
 * NUL after it: true, with *port, only for exactly "CONNECT " and a decimal
 * port up to 4294967295 (no sign, no spaces, no NUL inside).
 */
bool vsock_host_parse_connect(const char *line, size_t len, uint32_t *port);

/*
 * Creates the listening socket at `path` (mode 0600; a stale socket there is
 * replaced, anything else is an error). NULL (logged) on failure.
 */
struct vsock_host *vsock_host_create(const char *path, struct iothread *io);
/* The device's view of this host side (ctx is `h`). */
struct vsock_backend vsock_host_backend(struct vsock_host *h);
/*
 * Connects the device and starts accepting host programs. Sets the bound on
 * connections (guest's and host programs' together): VSOCK_MAX_CONNS, or
 * fewer when RLIMIT_NOFILE minus the descriptors open now, the handshakes
 * and VSOCK_HOST_FD_RESERVE leaves less room.
 */
bool vsock_host_start(struct vsock_host *h, struct virtio_vsock *vs);
/* That bound (for tests and the log). */
unsigned vsock_host_max_conns(struct vsock_host *h);
/*
 * The I/O thread is gone: from now on connections are freed at once.
 * Call after iothread_destroy() and before the device is reset for the
 * last time.
 */
void vsock_host_detach_io(struct vsock_host *h);
/* Closes the listener (and removes PATH) and every connection still open. */
void vsock_host_destroy(struct vsock_host *h);

#endif

/*
 * A VM's console log: every byte the guest writes to its serial console
 * goes to a file that never grows past a bound (when it passes `max`, it
 * becomes NAME.log.1, replacing the older one, and a new file starts), and
 * into a small in-memory ring that attached consoles and `logs -f` read
 * from. A reader that falls more than the ring behind skips ahead: the
 * guest is never slowed down by a slow reader.
 */
#ifndef SHOJI_DAEMON_VMLOG_H
#define SHOJI_DAEMON_VMLOG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMLOG_DEFAULT_MAX (1u << 20)
#define VMLOG_RING (64u << 10)

/* The bound of a VM's NAME.vmm.log (the VMM's stderr), shojid --vmm-log-max. */
#define VMM_LOG_DEFAULT_MAX (8u << 20)

/*
 * A log file that never grows past `max` bytes: when it is full it becomes
 * PATH.1 (replacing the older one) and a new PATH starts, so at most twice
 * `max` is kept. System calls only, no allocation, locks or logging: the
 * keeper (spawn.c), a fork of the threaded daemon, writes the VMM's stderr
 * through one.
 */
struct capped_file {
	int fd;
	uint64_t size;      /* of the current file */
	uint64_t max;
	char path[PATH_MAX];
	char old_path[PATH_MAX + 2];
};

/*
 * Takes `fd` (open on `path` for appending; -1 for "open it here") and
 * sizes it. False (fd closed) if the path is too long or cannot be opened.
 */
bool capped_file_open(struct capped_file *f, const char *path, uint64_t max, int fd);
/* Writes all of buf, rotating as needed; stops early only on a failed write (disk full). */
void capped_file_write(struct capped_file *f, const void *buf, size_t n);
void capped_file_close(struct capped_file *f);

struct vmlog;

/* Opens (appending to) `path`; NULL (logged) on failure. */
struct vmlog *vmlog_open(const char *path, uint64_t max);
void vmlog_close(struct vmlog *l);

void vmlog_append(struct vmlog *l, const void *buf, size_t n);
/* Bytes ever appended since open: the position a new follower starts at. */
uint64_t vmlog_position(struct vmlog *l);
/*
 * Copies bytes from *pos on (at most max), waiting up to timeout_ms for
 * some; advances *pos. 0 on timeout.
 */
size_t vmlog_read(struct vmlog *l, uint64_t *pos, void *buf, size_t max, int timeout_ms);

/*
 * The stored log (old file then current), at most `max` bytes from its end,
 * in a malloc'd buffer (*len bytes). NULL only when out of memory.
 */
char *vmlog_dump(struct vmlog *l, size_t max, size_t *len);

#endif

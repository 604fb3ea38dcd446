/* Implementation of block/lock.h: QEMU's image lock bytes on OFD locks. */
#include "block/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "base/log.h"

/* QEMU's permission bits (BLK_PERM_*) and where their lock bytes lie. */
enum {
	PERM_CONSISTENT_READ = 0,
	PERM_WRITE = 1,
	PERM_WRITE_UNCHANGED = 2,
	PERM_RESIZE = 3,
	PERM_COUNT = 4,
};
#define LOCK_PERM_BASE 100   /* byte 100 + p: "I hold permission p" */
#define LOCK_SHARED_BASE 200 /* byte 200 + p: "I do not share permission p" */

struct lock_set {
	unsigned held;     /* bit p: permission p is held */
	unsigned unshared; /* bit p: permission p is denied to others */
};

static struct lock_set lock_set_of(enum block_lock_mode mode)
{
	unsigned rw = 1u << PERM_WRITE | 1u << PERM_RESIZE;
	if (mode == BLOCK_LOCK_WRITE)
		return (struct lock_set){ 1u << PERM_CONSISTENT_READ | rw, rw };
	return (struct lock_set){ 1u << PERM_CONSISTENT_READ, rw };
}

static int lock_byte(int fd, short type, off_t off, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = len };
	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* True when another open file holds any lock on byte off. */
static int byte_taken(int fd, off_t off, bool *taken)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	*taken = fl.l_type != F_UNLCK;
	return 0;
}

static void unlock_all(int fd)
{
	lock_byte(fd, F_UNLCK, LOCK_PERM_BASE, LOCK_SHARED_BASE + PERM_COUNT - LOCK_PERM_BASE);
}

static int apply(int fd, struct lock_set s)
{
	for (int p = 0; p < PERM_COUNT; p++) {
		int r = 0;
		if (s.held & (1u << p))
			r = lock_byte(fd, F_RDLCK, LOCK_PERM_BASE + p, 1);
		if (r == 0 && (s.unshared & (1u << p)))
			r = lock_byte(fd, F_RDLCK, LOCK_SHARED_BASE + p, 1);
		if (r < 0)
			return r == -EAGAIN || r == -EACCES ? -EBUSY : r;
	}
	return 0;
}

/*
 * After applying our own bytes, so that two users racing each other both
 * see the other (QEMU orders it the same way): a permission we want that
 * someone does not share, or one we do not share that someone holds.
 */
static int check(int fd, struct lock_set s)
{
	for (int p = 0; p < PERM_COUNT; p++) {
		bool taken = false;
		int r = 0;
		if (s.held & (1u << p))
			r = byte_taken(fd, LOCK_SHARED_BASE + p, &taken);
		if (r == 0 && !taken && (s.unshared & (1u << p)))
			r = byte_taken(fd, LOCK_PERM_BASE + p, &taken);
		if (r < 0)
			return r;
		if (taken)
			return -EBUSY;
	}
	return 0;
}

int block_lock_fd(int fd, enum block_lock_mode mode, const char *path)
{
	if (mode == BLOCK_LOCK_NONE)
		return 0;
	struct lock_set s = lock_set_of(mode);
	int r = apply(fd, s);
	if (r == 0)
		r = check(fd, s);
	if (r == -ENOLCK || r == -EOPNOTSUPP) {
		log_warn("%s: this file system cannot lock images; nothing stops a second "
			 "VM or program from writing to it meanwhile", path);
		return 0;
	}
	if (r == -EBUSY)
		log_error("%s: is in use: another VM or program %s; stop it first (shoji-img -U "
			  "reads an image without locking)", path,
			  mode == BLOCK_LOCK_WRITE ? "has it open" : "is writing to it");
	else if (r < 0)
		log_error("%s: cannot lock: %s", path, strerror(-r));
	if (r < 0)
		unlock_all(fd);
	return r;
}

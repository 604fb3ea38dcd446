/*
 * The bounded console log (see vmlog.h). The file is rotated by rename, so
 * a reader that opened the old one keeps reading it whole.
 */
#include "daemon/vmlog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

struct vmlog {
	pthread_mutex_t lock;
	pthread_cond_t grew;
	char path[PATH_MAX];
	char old_path[PATH_MAX + 2];
	int fd;
	uint64_t max;
	uint64_t size;      /* of the current file */
	uint64_t total;     /* bytes appended since open */
	unsigned wakeups;
	uint8_t ring[VMLOG_RING];
};

struct vmlog *vmlog_open(const char *path, uint64_t max)
{
	struct vmlog *l = calloc(1, sizeof(*l));
	if (!l || strlen(path) >= sizeof(l->path)) {
		free(l);
		return NULL;
	}
	size_t n = strlen(path);
	memcpy(l->path, path, n + 1);
	memcpy(l->old_path, path, n);
	memcpy(l->old_path + n, ".1", 3);
	l->max = max;
	l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (l->fd < 0) {
		log_error("console log %s: %m", path);
		free(l);
		return NULL;
	}
	struct stat st;
	l->size = fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->grew, NULL);
	return l;
}

void vmlog_close(struct vmlog *l)
{
	if (!l)
		return;
	close(l->fd);
	pthread_cond_destroy(&l->grew);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* The current file is full: it becomes NAME.log.1 and a new one starts. */
static void vmlog_rotate(struct vmlog *l)
{
	if (rename(l->path, l->old_path) < 0)
		log_warn("console log %s: cannot rotate: %m", l->path);
	int fd = open(l->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_warn("console log %s: %m; keeping the old file", l->path);
		return;
	}
	close(l->fd);
	l->fd = fd;
	l->size = 0;
}

void vmlog_append(struct vmlog *l, const void *buf, size_t n)
{
	pthread_mutex_lock(&l->lock);
	const uint8_t *p = buf;
	size_t done = 0;
	while (done < n) {
		if (l->size >= l->max)
			vmlog_rotate(l);
		size_t chunk = n - done;
		if (chunk > l->max - l->size && l->size < l->max)
			chunk = (size_t)(l->max - l->size);
		ssize_t w = write(l->fd, p + done, chunk);
		if (w <= 0)
			break; /* disk full: the ring still has it */
		l->size += (uint64_t)w;
		done += (size_t)w;
	}
	for (size_t i = 0; i < n; i++)
		l->ring[(l->total + i) % VMLOG_RING] = p[i];
	l->total += n;
	pthread_cond_broadcast(&l->grew);
	pthread_mutex_unlock(&l->lock);
}

uint64_t vmlog_position(struct vmlog *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t t = l->total;
	pthread_mutex_unlock(&l->lock);
	return t;
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

size_t vmlog_read(struct vmlog *l, uint64_t *pos, void *buf, size_t max, int timeout_ms)
{
	struct timespec until;
	deadline_in(&until, timeout_ms);
	pthread_mutex_lock(&l->lock);
	unsigned wakeups = l->wakeups;
	while (*pos >= l->total && wakeups == l->wakeups &&
	       pthread_cond_timedwait(&l->grew, &l->lock, &until) != ETIMEDOUT)
		;
	if (*pos > l->total)
		*pos = l->total;
	if (l->total - *pos > VMLOG_RING)
		*pos = l->total - VMLOG_RING; /* too slow: skip what the ring lost */
	size_t n = (size_t)(l->total - *pos);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		((uint8_t *)buf)[i] = l->ring[(*pos + i) % VMLOG_RING];
	*pos += n;
	pthread_mutex_unlock(&l->lock);
	return n;
}

void vmlog_wake(struct vmlog *l)
{
	pthread_mutex_lock(&l->lock);
	l->wakeups++;
	pthread_cond_broadcast(&l->grew);
	pthread_mutex_unlock(&l->lock);
}

/* Appends up to `want` bytes of the end of `path` to out; returns bytes added. */
static size_t tail_file(const char *path, char *out, size_t want)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	struct stat st;
	size_t got = 0;
	if (fstat(fd, &st) == 0) {
		off_t start = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
		ssize_t r;
		while (got < want && (r = pread(fd, out + got, want - got, start + (off_t)got)) > 0)
			got += (size_t)r;
	}
	close(fd);
	return got;
}

char *vmlog_dump(struct vmlog *l, size_t max, size_t *len)
{
	char *out = malloc(max + 1);
	if (!out)
		return NULL;
	pthread_mutex_lock(&l->lock);
	struct stat st;
	size_t cur = stat(l->path, &st) == 0 ? (size_t)st.st_size : 0;
	if (cur > max)
		cur = max;
	size_t n = tail_file(l->old_path, out, max - cur);
	n += tail_file(l->path, out + n, max - n);
	pthread_mutex_unlock(&l->lock);
	*len = n;
	return out;
}

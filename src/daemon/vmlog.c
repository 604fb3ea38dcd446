/*
 * The bounded console log and the capped file under it (see vmlog.h). The
 * file is rotated by rename, so a reader that opened the old one keeps
 * reading it whole.
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

/* ---- the capped file ---- */

bool capped_file_open(struct capped_file *f, const char *path, uint64_t max, int fd)
{
	size_t n = strlen(path);
	if (n + 2 >= sizeof(f->path) || max == 0) {
		if (fd >= 0)
			close(fd);
		errno = max ? ENAMETOOLONG : EINVAL;
		return false;
	}
	memcpy(f->path, path, n + 1);
	memcpy(f->old_path, path, n);
	memcpy(f->old_path + n, ".1", 3);
	f->max = max;
	f->fd = fd >= 0 ? fd : open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (f->fd < 0)
		return false;
	struct stat st;
	f->size = fstat(f->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	return true;
}

void capped_file_close(struct capped_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/*
 * The current file is full: it becomes PATH.1 and a new one starts. When
 * that cannot be done, the full file is emptied instead: its lines are
 * lost, but never the bound. False if even that failed.
 */
static bool capped_file_rotate(struct capped_file *f)
{
	if (rename(f->path, f->old_path) == 0) {
		int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
			      0600);
		if (fd >= 0) {
			close(f->fd);
			f->fd = fd;
			f->size = 0;
			return true;
		}
	}
	if (ftruncate(f->fd, 0) < 0)
		return false;
	f->size = 0;
	return true;
}

void capped_file_write(struct capped_file *f, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	size_t done = 0;
	while (done < n && f->fd >= 0) {
		if (f->size >= f->max && !capped_file_rotate(f))
			break;
		size_t chunk = n - done;
		if (chunk > f->max - f->size)
			chunk = (size_t)(f->max - f->size);
		ssize_t w = write(f->fd, p + done, chunk);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		f->size += (uint64_t)w;
		done += (size_t)w;
	}
}

/* ---- the console log ---- */

struct vmlog {
	pthread_mutex_t lock;
	pthread_cond_t grew;
	struct capped_file file;
	uint64_t total;     /* bytes appended since open */
	uint8_t ring[VMLOG_RING];
};

struct vmlog *vmlog_open(const char *path, uint64_t max)
{
	struct vmlog *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	if (!capped_file_open(&l->file, path, max, -1)) {
		log_error("console log %s: %m", path);
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->grew, NULL);
	return l;
}

void vmlog_close(struct vmlog *l)
{
	if (!l)
		return;
	capped_file_close(&l->file);
	pthread_cond_destroy(&l->grew);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void vmlog_append(struct vmlog *l, const void *buf, size_t n)
{
	pthread_mutex_lock(&l->lock);
	const uint8_t *p = buf;
	capped_file_write(&l->file, buf, n); /* disk full: the ring still has it */
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
	while (*pos >= l->total &&
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
	size_t cur = stat(l->file.path, &st) == 0 ? (size_t)st.st_size : 0;
	if (cur > max)
		cur = max;
	size_t n = tail_file(l->file.old_path, out, max - cur);
	n += tail_file(l->file.path, out + n, max - n);
	pthread_mutex_unlock(&l->lock);
	*len = n;
	return out;
}

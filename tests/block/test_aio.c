/*
 * block/aio.c: reads and writes of a raw image through its io_uring, what
 * the ring refuses (and so leaves to the blocking path), short transfers
 * and closing with requests in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/aio.h"
#include "block/block.h"
#include "block/file.h"

#define IMG_BYTES (1u << 20)

static char dir[64];
static char raw_path[128];

static int group_setup(void **state)
{
	(void)state;
	strcpy(dir, "/var/tmp/aio-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(raw_path, sizeof(raw_path), "%s/disk.raw", dir);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(raw_path);
	rmdir(dir);
	return 0;
}

/* A fresh image whose byte i is (i * 7) & 0xff. */
static int test_setup(void **state)
{
	(void)state;
	uint8_t *buf = malloc(IMG_BYTES);
	for (size_t i = 0; i < IMG_BYTES; i++)
		buf[i] = (uint8_t)(i * 7);
	int fd = open(raw_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ssize_t w = fd < 0 ? -1 : write(fd, buf, IMG_BYTES);
	if (fd >= 0)
		close(fd);
	free(buf);
	return w == IMG_BYTES ? 0 : -1;
}

struct rig {
	struct block_dev *bd;
	struct block_aio *aio;
	int efd;
};

/* -errno of block_aio_open, so a test can tell a host without io_uring. */
static int rig_open(struct rig *r, const char *path, const char *format, bool read_only,
		    bool direct, unsigned depth)
{
	struct block_open_opts o = { .read_only = read_only,
				     .cache = direct ? BLOCK_CACHE_NONE : BLOCK_CACHE_WRITEBACK };
	assert_int_equal(block_open(&r->bd, path, format, &o), 0);
	r->efd = eventfd(0, EFD_CLOEXEC);
	assert_true(r->efd >= 0);
	r->aio = NULL;
	return block_aio_open(&r->aio, r->bd, depth, r->efd, BLOCK_AIO_SIGNAL_ALL);
}

static void rig_open_ok(struct rig *r, bool read_only, bool direct, unsigned depth)
{
	int e = rig_open(r, raw_path, "raw", read_only, direct, depth);
	if (e < 0) {
		fprintf(stderr, "io_uring unavailable: %s\n", strerror(-e));
		skip();
	}
}

static void rig_close(struct rig *r)
{
	block_aio_close(r->aio);
	block_close(r->bd);
	close(r->efd);
}

/* Waits for and reaps exactly one completion; returns its error. */
static int reap_one(struct rig *r, void **tag)
{
	struct block_aio_done d;
	assert_int_equal(block_aio_submit(r->aio), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(block_aio_wait(r->aio), 0);
		if (block_aio_reap(r->aio, &d, 1) == 1) {
			if (tag)
				*tag = d.tag;
			return d.error;
		}
	}
	fail_msg("no completion");
	return 0;
}

static void test_write_then_read(void **state)
{
	(void)state;
	struct rig r;
	rig_open_ok(&r, false, false, 8);
	char a[100], b[412], c[512];
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	memset(c, 'c', sizeof(c));
	struct iovec wv[] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	int tag = 1;
	assert_int_equal(block_aio_writev(r.aio, wv, 3, 4096, &tag), 0);
	assert_int_equal(block_aio_writes_inflight(r.aio), 1);
	void *got = NULL;
	assert_int_equal(reap_one(&r, &got), 0);
	assert_ptr_equal(got, &tag);
	assert_int_equal(block_aio_inflight(r.aio), 0);
	assert_int_equal(block_aio_writes_inflight(r.aio), 0);

	char back[1024];
	assert_int_equal(block_read(r.bd, back, sizeof(back), 4096), 0);
	assert_memory_equal(back, a, sizeof(a));
	assert_memory_equal(back + 100, b, sizeof(b));
	assert_memory_equal(back + 512, c, sizeof(c));

	char ring_back[1024];
	struct iovec rv[] = { { ring_back, 1000 }, { ring_back + 1000, 24 } };
	assert_int_equal(block_aio_readv(r.aio, rv, 2, 4096, &tag), 0);
	assert_int_equal(block_aio_writes_inflight(r.aio), 0);
	assert_int_equal(reap_one(&r, NULL), 0);
	assert_memory_equal(ring_back, back, sizeof(back));
	rig_close(&r);
}

/* What the ring leaves to the blocking path: outside the disk, writes to
 * a read-only disk, anything once depth requests are in flight. */
static void test_refusals(void **state)
{
	(void)state;
	struct rig r;
	rig_open_ok(&r, true, false, 2);
	char buf[512];
	struct iovec v = { buf, sizeof(buf) };
	assert_int_equal(block_aio_writev(r.aio, &v, 1, 0, NULL), -EAGAIN);
	assert_int_equal(block_aio_readv(r.aio, &v, 1, IMG_BYTES - 256, NULL), -EAGAIN);
	assert_int_equal(block_aio_readv(r.aio, &v, 1, UINT64_MAX - 100, NULL), -EAGAIN);
	struct iovec empty = { buf, 0 };
	assert_int_equal(block_aio_readv(r.aio, &empty, 1, 0, NULL), -EAGAIN);
	assert_int_equal(block_aio_readv(r.aio, &v, 1, 0, NULL), 0);
	assert_int_equal(block_aio_readv(r.aio, &v, 1, 512, NULL), 0);
	assert_int_equal(block_aio_readv(r.aio, &v, 1, 1024, NULL), -EBUSY);
	assert_int_equal(reap_one(&r, NULL), 0);
	assert_int_equal(reap_one(&r, NULL), 0);
	assert_false(block_aio_may_rmw(r.aio)); /* buffered: never a read-modify-write */
	rig_close(&r);
}

/* O_DIRECT: buffers and offsets the file cannot take go to the blocking
 * path (which bounces them), aligned ones to the ring. */
static void test_direct_alignment(void **state)
{
	(void)state;
	struct rig r;
	int e = rig_open(&r, raw_path, "raw", false, true, 4);
	if (e < 0) {
		block_close(r.bd);
		close(r.efd);
		skip(); /* no io_uring, or a file system without O_DIRECT */
	}
	assert_true(block_aio_may_rmw(r.aio));
	uint8_t *buf = bfile_alloc(8192);
	struct iovec odd_base = { buf + 512, 4096 };
	struct iovec odd_len = { buf, 512 };
	struct iovec good = { buf, 4096 };
	assert_int_equal(block_aio_writev(r.aio, &odd_base, 1, 0, NULL), -EAGAIN);
	assert_int_equal(block_aio_writev(r.aio, &odd_len, 1, 0, NULL), -EAGAIN);
	assert_int_equal(block_aio_writev(r.aio, &good, 1, 512, NULL), -EAGAIN);
	memset(buf, 0x5a, 4096);
	assert_int_equal(block_aio_writev(r.aio, &good, 1, 8192, NULL), 0);
	assert_int_equal(reap_one(&r, NULL), 0);
	uint8_t back[4096];
	assert_int_equal(block_read(r.bd, back, sizeof(back), 8192), 0);
	assert_memory_equal(back, buf, sizeof(back));
	free(buf);
	rig_close(&r);
}

/* A file cut short behind the disk's back: the ring moves what is there,
 * resubmits the rest, and reports an I/O error when nothing more comes
 * (never a loop, never a success with stale bytes). */
static void test_short_read_then_eof(void **state)
{
	(void)state;
	struct rig r;
	rig_open_ok(&r, false, false, 4);
	assert_int_equal(truncate(raw_path, 6144), 0);
	uint8_t buf[8192];
	memset(buf, 0xee, sizeof(buf));
	struct iovec v[] = { { buf, 4096 }, { buf + 4096, 4096 } };
	assert_int_equal(block_aio_readv(r.aio, v, 2, 0, NULL), 0);
	assert_int_equal(reap_one(&r, NULL), -EIO);
	for (size_t i = 0; i < 6144; i++)
		assert_int_equal(buf[i], (uint8_t)(i * 7));
	assert_int_equal(block_aio_inflight(r.aio), 0);
	/* The iovec given is the caller's and stays as it was. */
	assert_ptr_equal(v[1].iov_base, buf + 4096);
	assert_int_equal(v[1].iov_len, 4096);
	rig_close(&r);
}

/* Closing with requests in the kernel waits for them (they write into the
 * caller's buffers); under ASan a use after free would show. */
static void test_close_in_flight(void **state)
{
	(void)state;
	struct rig r;
	rig_open_ok(&r, false, false, 64);
	uint8_t *buf = malloc(64 * 4096);
	struct iovec v[64];
	for (unsigned i = 0; i < 64; i++) {
		v[i] = (struct iovec){ buf + i * 4096, 4096 };
		assert_int_equal(block_aio_readv(r.aio, &v[i], 1, (uint64_t)i * 4096, NULL), 0);
	}
	assert_int_equal(block_aio_submit(r.aio), 0);
	rig_close(&r);
	for (size_t i = 0; i < 64 * 4096; i++)
		assert_int_equal(buf[i], (uint8_t)(i * 7));
	free(buf);
}

/* qcow2 needs its own metadata for every request: no ring. */
static void test_qcow2_refused(void **state)
{
	(void)state;
	char q[160];
	snprintf(q, sizeof(q), "%s/disk.qcow2", dir);
	struct block_create_opts co = { .size = IMG_BYTES };
	assert_int_equal(block_create(q, "qcow2", &co), 0);
	struct rig r;
	assert_int_equal(rig_open(&r, q, "qcow2", false, false, 4), -ENOTSUP);
	assert_null(r.aio);
	rig_close(&r);
	unlink(q);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup(f, test_setup)
	const struct CMUnitTest tests[] = {
		T(test_write_then_read),
		T(test_refusals),
		T(test_direct_alignment),
		T(test_short_read_then_eof),
		T(test_close_in_flight),
		T(test_qcow2_refused),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

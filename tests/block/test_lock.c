/*
 * Unit tests of what the block layer guards on the host side (issue 16,
 * items 1 and 5): image locks between users of one image (writers exclude
 * everyone, readers share, -U takes none, a failed or closed open leaves no
 * lock, creating over a locked file truncates nothing), and backing files
 * named by a hostile image (outside the allowed directories, through "..",
 * through a symbolic link, device nodes and FIFOs) refused with one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/log.h"
#include "block/block.h"
#include "block/file.h"

static char dir[256];   /* the images' directory */
static char other[300]; /* a directory beside it, holding the "secret" */

static const char *path_of(const char *name)
{
	static char p[4][PATH_MAX];
	static int i;
	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void make_raw(const char *path, const char *content)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	char buf[4096] = { 0 };
	strncpy(buf, content, sizeof(buf) - 1);
	assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
}

static void make_overlay(const char *name, const char *backing, const char *bfmt)
{
	struct block_create_opts o = { .size = 4096, .backing_file = backing,
				       .backing_format = bfmt };
	assert_int_equal(block_create(path_of(name), "qcow2", &o), 0);
}

static int open_img(struct block_dev **bd, const char *path, const char *fmt, bool ro,
		    bool shared)
{
	struct block_open_opts o = { .read_only = ro, .force_share = shared };
	return block_open(bd, path, fmt, &o);
}

/* ---- locks ---- */

static void test_writer_excludes_everyone(void **state)
{
	(void)state;
	const char *img = path_of("w.raw");
	make_raw(img, "data");
	struct block_dev *w, *x;
	assert_int_equal(open_img(&w, img, "raw", false, false), 0);
	assert_int_equal(open_img(&x, img, "raw", false, false), -EBUSY);
	assert_int_equal(open_img(&x, img, "raw", true, false), -EBUSY);
	/* -U looks without locking, read-only only. */
	assert_int_equal(open_img(&x, img, "raw", true, true), 0);
	block_close(x);
	assert_int_equal(open_img(&x, img, "raw", false, true), -EINVAL);
	block_close(w);
	/* Closing released it. */
	assert_int_equal(open_img(&w, img, "raw", false, false), 0);
	block_close(w);
}

static void test_readers_share(void **state)
{
	(void)state;
	const char *img = path_of("r.raw");
	make_raw(img, "data");
	struct block_dev *a, *b, *w;
	assert_int_equal(open_img(&a, img, "raw", true, false), 0);
	assert_int_equal(open_img(&b, img, "raw", true, false), 0);
	assert_int_equal(open_img(&w, img, "raw", false, false), -EBUSY);
	block_close(a);
	assert_int_equal(open_img(&w, img, "raw", false, false), -EBUSY);
	block_close(b);
	assert_int_equal(open_img(&w, img, "raw", false, false), 0);
	block_close(w);
}

/* A writable overlay holds its backing file as a reader: nobody may then
 * write the base under it, though other overlays may share it. */
static void test_chain_locks_backing(void **state)
{
	(void)state;
	make_raw(path_of("base.raw"), "base");
	make_overlay("o1.qcow2", "base.raw", "raw");
	make_overlay("o2.qcow2", "base.raw", "raw");
	struct block_dev *o1, *o2, *b;
	assert_int_equal(open_img(&o1, path_of("o1.qcow2"), "qcow2", false, false), 0);
	assert_int_equal(open_img(&b, path_of("base.raw"), "raw", false, false), -EBUSY);
	assert_int_equal(open_img(&o2, path_of("o2.qcow2"), "qcow2", false, false), 0);
	block_close(o2);
	block_close(o1);
	assert_int_equal(open_img(&b, path_of("base.raw"), "raw", false, false), 0);
	block_close(b);
}

/* Creating truncates: over a file in use it must refuse and change nothing. */
static void test_create_over_locked_image(void **state)
{
	(void)state;
	const char *img = path_of("busy.raw");
	make_raw(img, "precious");
	struct block_dev *r;
	assert_int_equal(open_img(&r, img, "raw", true, false), 0);
	struct block_create_opts o = { .size = 1 << 20 };
	assert_int_equal(block_create(img, "qcow2", &o), -EBUSY);
	assert_int_equal(block_create(img, "raw", &o), -EBUSY);
	char back[16] = { 0 };
	assert_int_equal(block_read(r, back, 8, 0), 0);
	assert_memory_equal(back, "precious", 8);
	struct stat st;
	assert_int_equal(stat(img, &st), 0);
	assert_int_equal(st.st_size, 4096);
	block_close(r);
}

/* A failed open (bad header) leaves no lock behind. */
static void test_failed_open_unlocks(void **state)
{
	(void)state;
	const char *img = path_of("junk.qcow2");
	make_raw(img, "not a qcow2 header");
	struct block_dev *bd;
	assert_true(open_img(&bd, img, "qcow2", false, false) < 0);
	assert_int_equal(open_img(&bd, img, "raw", false, false), 0);
	block_close(bd);
}

/* ---- backing files named by a hostile image ---- */

static int open_confined(struct block_dev **bd, const char *name)
{
	const char *dirs[] = { dir, NULL };
	struct block_open_opts o = { .read_only = true, .backing_dirs = dirs };
	return block_open(bd, path_of(name), "qcow2", &o);
}

static void test_backing_inside_allowed(void **state)
{
	(void)state;
	make_raw(path_of("good.raw"), "good");
	make_overlay("good.qcow2", "good.raw", "raw");
	struct block_dev *bd;
	assert_int_equal(open_confined(&bd, "good.qcow2"), 0);
	char back[8];
	assert_int_equal(block_read(bd, back, 4, 0), 0);
	assert_memory_equal(back, "good", 4);
	block_close(bd);
	/* The same, named by an absolute path inside the directory. */
	char abs[PATH_MAX];
	snprintf(abs, sizeof(abs), "%s/good.raw", dir);
	make_overlay("good-abs.qcow2", abs, "raw");
	assert_int_equal(open_confined(&bd, "good-abs.qcow2"), 0);
	block_close(bd);
}

static void test_backing_outside_refused(void **state)
{
	(void)state;
	char secret[PATH_MAX], rel[PATH_MAX], link[PATH_MAX];
	snprintf(secret, sizeof(secret), "%s/secret", other);
	make_raw(secret, "secret");
	/* absolute, relative with "..", and a symbolic link inside the dir */
	snprintf(rel, sizeof(rel), "../%s/secret", strrchr(other, '/') + 1);
	snprintf(link, sizeof(link), "%s/link.raw", dir);
	assert_int_equal(symlink(secret, link), 0);
	make_overlay("abs.qcow2", secret, "raw");
	make_overlay("dotdot.qcow2", rel, "raw");
	make_overlay("link.qcow2", "link.raw", "raw");
	const char *names[] = { "abs.qcow2", "dotdot.qcow2", "link.qcow2" };
	for (size_t i = 0; i < 3; i++) {
		struct block_dev *bd = NULL;
		assert_int_equal(open_confined(&bd, names[i]), -EACCES);
		assert_null(bd);
	}
	/* Without a restriction (shoji-img's default) they open, as in qemu-img. */
	struct block_dev *bd;
	assert_int_equal(open_img(&bd, path_of("abs.qcow2"), "qcow2", true, false), 0);
	block_close(bd);
}

/* Device nodes and FIFOs are never backing files, allowed directory or not
 * (a FIFO would block the open forever). */
static void test_backing_not_regular_refused(void **state)
{
	(void)state;
	make_overlay("dev.qcow2", "/dev/zero", "raw");
	assert_int_equal(mkfifo(path_of("fifo.raw"), 0600), 0);
	make_overlay("fifo.qcow2", "fifo.raw", "raw");
	struct block_dev *bd = NULL;
	assert_int_equal(open_img(&bd, path_of("dev.qcow2"), "qcow2", true, false), -EINVAL);
	assert_int_equal(open_img(&bd, path_of("fifo.qcow2"), "qcow2", true, false), -EINVAL);
	assert_int_equal(open_confined(&bd, "fifo.qcow2"), -EINVAL);
	assert_null(bd);
}

/* The file opened must be the one checked: a swap in between is refused,
 * and a FIFO, even named directly, never blocks the open. */
static void test_swapped_file_refused(void **state)
{
	(void)state;
	make_raw(path_of("checked.raw"), "checked");
	make_raw(path_of("swapped.raw"), "swapped");
	struct stat checked;
	assert_int_equal(stat(path_of("checked.raw"), &checked), 0);
	struct bfile f;
	assert_int_equal(bfile_open(&f, path_of("swapped.raw"), true, false, BLOCK_LOCK_READ,
				    &checked), -EAGAIN);
	assert_int_equal(bfile_open(&f, path_of("checked.raw"), true, false, BLOCK_LOCK_READ,
				    &checked), 0);
	bfile_close(&f);
	assert_int_equal(mkfifo(path_of("top.fifo"), 0600), 0);
	struct block_dev *bd = NULL;
	assert_true(open_img(&bd, path_of("top.fifo"), "raw", true, false) < 0);
	assert_null(bd);
}

static void test_path_within(void **state)
{
	(void)state;
	make_raw(path_of("in.raw"), "x");
	const char *dirs[] = { other, dir, NULL };
	assert_int_equal(block_path_within(path_of("in.raw"), dirs), 0);
	const char *root[] = { "/", NULL };
	assert_int_equal(block_path_within(path_of("in.raw"), root), 0);
	const char *none[] = { other, NULL };
	assert_int_equal(block_path_within(path_of("in.raw"), none), -EACCES);
	/* A directory whose name is a prefix of the real one is not it. */
	char prefix[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%.*s", (int)strlen(dir) - 1, dir);
	mkdir(prefix, 0700);
	const char *pre[] = { prefix, NULL };
	assert_int_equal(block_path_within(path_of("in.raw"), pre), -EACCES);
	rmdir(prefix);
	assert_int_equal(block_path_within(path_of("missing.raw"), dirs), -ENOENT);
}

static int setup(void **state)
{
	(void)state;
	char base[] = "/tmp/shoji-lock-XXXXXX";
	if (!mkdtemp(base))
		return -1;
	snprintf(dir, sizeof(dir), "%s/images", base);
	snprintf(other, sizeof(other), "%s/private", base);
	if (mkdir(dir, 0700) < 0 || mkdir(other, 0700) < 0)
		return -1;
	log_init("test-lock", LOG_LEVEL_ERROR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strrchr(dir, '/') - dir), dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_excludes_everyone),
		cmocka_unit_test(test_readers_share),
		cmocka_unit_test(test_chain_locks_backing),
		cmocka_unit_test(test_create_over_locked_image),
		cmocka_unit_test(test_failed_open_unlocks),
		cmocka_unit_test(test_backing_inside_allowed),
		cmocka_unit_test(test_backing_outside_refused),
		cmocka_unit_test(test_backing_not_regular_refused),
		cmocka_unit_test(test_swapped_file_refused),
		cmocka_unit_test(test_path_within),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

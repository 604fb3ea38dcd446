/*
 * Unit tests for src/image/diagnose.h: the one line shoji-img build makes
 * of mmdebstrap's or mke2fs's output (apt's own messages, as seen in real
 * failed builds), naming the recipe line of a package the archive lacks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "image/diagnose.h"

static struct recipe r;

static int setup(void **state)
{
	(void)state;
	char err[256];
	return recipe_parse("s.recipe", "kernel = linux-image-cloud-amd64\n"
			    "packages = less\npackages = nosuch\n", &r, err, sizeof(err)) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	recipe_free(&r);
	return 0;
}

static void expect(const char *tool, const char *log, const char *want)
{
	char out[512];
	diagnose_line(tool, log, &r, "/var/tmp/x.build-1", out, sizeof(out));
	if (!strstr(out, want))
		fail_msg("'%s' lacks '%s'", out, want);
	assert_null(strchr(out, '\n'));
}

static void test_missing_package(void **state)
{
	(void)state;
	expect("mmdebstrap", "I: running apt-get update...\nE: Unable to locate package nosuch\n"
	       "E: apt-get --yes install failed\n",
	       "s.recipe:3: key 'packages': no package 'nosuch' in bookworm");
	expect("mmdebstrap", "E: Package 'linux-image-cloud-amd64' has no installation candidate\n",
	       "s.recipe:1: key 'kernel': no package 'linux-image-cloud-amd64'");
}

static void test_unreachable(void **state)
{
	(void)state;
	expect("mmdebstrap", "Err:1 http://127.0.0.1:9/debian bookworm InRelease\n"
	       "E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not "
	       "connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\n",
	       "cannot reach the Debian archive (deb.debian.org): Failed to fetch http://127.0.0.1:9/"
	       "debian/dists/bookworm/InRelease Could not connect");
	expect("mmdebstrap", "W: Temporary failure resolving 'deb.debian.org'\n",
	       "or set 'mirror =' in s.recipe");
}

static void test_no_space(void **state)
{
	(void)state;
	expect("mmdebstrap", "E: Write error - write (28: No space left on device)\n",
	       "no space left on device under /var/tmp/x.build-1");
	expect("mke2fs", "__populate_fs: No space left on device while writing file \"x\"\n",
	       "no space left on device");
}

static void test_fallback(void **state)
{
	(void)state;
	expect("mmdebstrap", "I: a\nE: setup failed:   chroot  broke\nI: b\n",
	       "mmdebstrap failed: setup failed: chroot broke (SHOJI_DEBUG=1");
	expect("mke2fs", "mke2fs: Could not allocate block in ext2 filesystem while populating\n",
	       "mke2fs failed: mke2fs: Could not allocate block");
	expect("mke2fs", "", "mke2fs failed: no message");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_package),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_no_space),
		cmocka_unit_test(test_fallback),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * Unit tests for src/image/recipe.h, the recipe of `shoji-img build`: a
 * full recipe lands in the struct with the lines its words came from,
 * defaults fill what is left out, and every mistake the parser knows is
 * refused in one line naming file:line, the key and the fix, with the
 * output untouched.
 */
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

#include "image/recipe.h"

static void parses(const char *text, struct recipe *r)
{
	char err[256] = "";
	bool ok = recipe_parse("r.recipe", text, r, err, sizeof(err));
	if (!ok)
		fail_msg("refused: %s", err);
}

/* The text is refused with a message containing each of the fragments. */
static void refused(const char *text, const char *want1, const char *want2)
{
	struct recipe r = { .size = 12345 };
	char err[256] = "";
	assert_false(recipe_parse("r.recipe", text, &r, err, sizeof(err)));
	if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
		fail_msg("message '%s' lacks '%s' / '%s'", err, want1, want2 ? want2 : "");
	assert_null(strchr(err, '\n'));
	assert_int_equal(r.size, 12345); /* untouched */
	assert_null(r.kernel.text);
}

static void test_full_recipe(void **state)
{
	(void)state;
	struct recipe r;
	parses("# a comment\n"
	       "suite = trixie\n"
	       "\n"
	       "kernel = linux-image-cloud-amd64   # inline comment\n"
	       "packages = curl  less\n"
	       "packages = g++ libc6.1\n"
	       "copy = files/motd /etc/motd\n"
	       "copy = ../shared/dir /opt/dir\n"
	       "hostname = svc-1\n"
	       "size = 1536M\n"
	       "first-boot = boot.sh\n"
	       "mirror = http://deb.debian.org/debian\n", &r);
	assert_string_equal(r.suite.text, "trixie");
	assert_string_equal(r.kernel.text, "linux-image-cloud-amd64");
	assert_int_equal(r.kernel.line, 4);
	assert_int_equal(r.npackages, 4);
	assert_string_equal(r.packages[2].text, "g++");
	assert_int_equal(r.packages[3].line, 6);
	assert_int_equal(r.ncopies, 2);
	assert_string_equal(r.copies[1].src, "../shared/dir");
	assert_string_equal(r.copies[1].dest, "/opt/dir");
	assert_int_equal(r.copies[1].line, 8);
	assert_string_equal(r.hostname.text, "svc-1");
	assert_int_equal(r.size, 1536ull << 20);
	assert_string_equal(r.first_boot.text, "boot.sh");
	assert_string_equal(r.mirror.text, "http://deb.debian.org/debian");
	assert_int_equal(recipe_package_line(&r, "less"), 5);
	assert_int_equal(recipe_package_line(&r, "linux-image-cloud-amd64"), 4);
	assert_int_equal(recipe_package_line(&r, "vim"), 0);
	assert_non_null(strstr(r.text, "# a comment"));
	recipe_free(&r);
}

static void test_defaults(void **state)
{
	(void)state;
	struct recipe r;
	parses("kernel=linux-image-amd64", &r);
	assert_string_equal(r.suite.text, RECIPE_DEFAULT_SUITE);
	assert_string_equal(r.hostname.text, RECIPE_DEFAULT_HOSTNAME);
	assert_int_equal(r.size, RECIPE_DEFAULT_SIZE);
	assert_null(r.mirror.text);
	assert_null(r.first_boot.text);
	assert_int_equal(r.npackages, 0);
	recipe_free(&r);
}

#define K "kernel = linux-image-amd64\n"

static void test_line_errors(void **state)
{
	(void)state;
	refused(K "packages curl\n", "r.recipe:2: 'packages curl' is not 'key = value'", "comment");
	refused(K "= x\n", "r.recipe:2: unknown key ''", "the keys are suite, kernel");
	refused(K "\n\npakages = curl\n", "r.recipe:4: unknown key 'pakages'", "packages");
	refused(K "suite =\n", "r.recipe:2: key 'suite': has no value", "remove the line");
	refused(K "packages = # nothing\n", "r.recipe:2: key 'packages': has no value", NULL);
	refused(K "kernel = linux-image-cloud-amd64\n", "r.recipe:2: key 'kernel': given twice "
		"(first on line 1)", "keep one");
	refused(K "suite = a\nsuite = b\n", "r.recipe:3: key 'suite': given twice", NULL);
	refused(K "size = 1G\nsize = 2G\n", "r.recipe:3: key 'size': given twice", NULL);
	refused(K "hostname = a\nhostname = b\n", "r.recipe:3: key 'hostname': given twice", NULL);
	refused(K "first-boot = a\nfirst-boot = b\n", "r.recipe:3: key 'first-boot': given twice",
		NULL);
	refused(K "mirror = http://a\nmirror = http://b\n", "r.recipe:3: key 'mirror': given twice",
		NULL);
	char many[1024] = K "packages =";
	for (int i = 0; i < 65; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), " p%d", i);
	refused(many, "r.recipe:2: key 'packages': more than 64 values", "another 'packages ='");
}

static void test_missing_kernel(void **state)
{
	(void)state;
	refused("packages = curl\n", "r.recipe: key 'kernel' is missing",
		"kernel = linux-image-cloud-amd64");
	refused("", "key 'kernel' is missing", NULL);
}

static void test_value_errors(void **state)
{
	(void)state;
	refused(K "suite = bookworm trixie\n", "r.recipe:2: key 'suite': takes one value",
		"suite = bookworm");
	refused(K "suite = Bookworm\n", "key 'suite': 'Bookworm' is not a suite name", NULL);
	refused("kernel = linux-image-amd64 linux-image-cloud-amd64\n",
		"r.recipe:1: key 'kernel': takes one value", NULL);
	refused("kernel = Linux\n", "r.recipe:1: key 'kernel': 'Linux' is not a Debian package name",
		NULL);
	refused(K "packages = curl vim,less\n", "key 'packages': 'vim,less' is not a Debian package",
		"separate names with spaces");
	refused(K "packages = a\n", "key 'packages': 'a' is not a Debian package", NULL);
	refused(K "packages = -x\n", "'-x' is not a Debian package", NULL);
	refused(K "copy = motd\n", "r.recipe:2: key 'copy': takes SRC DEST", "(1 value given)");
	refused(K "copy = a b c\n", "key 'copy': takes SRC DEST", "(3 values given)");
	refused(K "copy = /etc/motd /etc/motd\n", "key 'copy': source '/etc/motd' must be relative",
		NULL);
	refused(K "copy = motd etc/motd\n", "key 'copy': destination 'etc/motd' must be an absolute",
		NULL);
	refused(K "copy = motd /etc/../root/x\n", "destination '/etc/../root/x' must not contain '..'",
		NULL);
	refused(K "copy = motd /..\n", "must not contain '..'", NULL);
	refused(K "hostname = a b\n", "key 'hostname': takes one value", NULL);
	refused(K "hostname = -desk\n", "key 'hostname': '-desk' is not a host name", NULL);
	refused(K "hostname = desk.example\n", "'desk.example' is not a host name", NULL);
	refused(K "hostname = "
		"a123456789012345678901234567890123456789012345678901234567890123\n",
		"is not a host name (1-63", NULL);
	refused(K "size = 1 G\n", "key 'size': takes one value", NULL);
	refused(K "size = big\n", "key 'size': 'big' is not a size", "2G or 1536M");
	refused(K "size = 100M\n", "key 'size': 100M is too small", "at least 256M");
	refused(K "size = 268435457\n", "key 'size': 268435457 is not a multiple of 4K", NULL);
	refused(K "first-boot = a b\n", "key 'first-boot': takes one value", NULL);
	refused(K "first-boot = /root/x.sh\n", "key 'first-boot': '/root/x.sh' must be relative",
		NULL);
	refused(K "mirror = a b\n", "key 'mirror': takes one value", NULL);
	refused(K "mirror = deb.debian.org/debian\n",
		"key 'mirror': 'deb.debian.org/debian' is not an http://", NULL);
}

/* A '#' inside a word is not a comment: only one after a blank is. */
static void test_hash_in_word(void **state)
{
	(void)state;
	struct recipe r;
	parses(K "copy = a#b /etc/a#b\n", &r);
	assert_string_equal(r.copies[0].src, "a#b");
	recipe_free(&r);
}

static char tmpdir[64];

static void touch(const char *rel)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
}

static void test_check_files(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-recipe-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	touch("motd");
	touch("boot.sh");
	char sub[128], err[256] = "";
	snprintf(sub, sizeof(sub), "%s/dir", tmpdir);
	assert_int_equal(mkdir(sub, 0755), 0);
	struct recipe r;
	parses(K "copy = motd /etc/motd\ncopy = dir /opt/dir\nfirst-boot = boot.sh\n", &r);
	assert_true(recipe_check_files(&r, tmpdir, err, sizeof(err)));
	recipe_free(&r);

	parses(K "copy = motd /etc/motd\ncopy = nothere /x\n", &r);
	assert_false(recipe_check_files(&r, tmpdir, err, sizeof(err)));
	assert_non_null(strstr(err, "r.recipe:3: key 'copy': nothere: No such file"));
	assert_non_null(strstr(err, "relative to the recipe's folder"));
	recipe_free(&r);

	parses(K "first-boot = dir\n", &r);
	assert_false(recipe_check_files(&r, tmpdir, err, sizeof(err)));
	assert_non_null(strstr(err, "r.recipe:2: key 'first-boot': dir is not a regular file"));
	recipe_free(&r);

	parses(K "first-boot = gone.sh\n", &r);
	assert_false(recipe_check_files(&r, tmpdir, err, sizeof(err)));
	assert_non_null(strstr(err, "r.recipe:2: key 'first-boot': gone.sh: No such file"));
	recipe_free(&r);

	char big[5000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	char text[5200];
	snprintf(text, sizeof(text), K "copy = %s /x\n", big);
	parses(text, &r);
	assert_false(recipe_check_files(&r, tmpdir, err, sizeof(err)));
	assert_non_null(strstr(err, "r.recipe:2: key 'copy': path too long (4999 bytes)"));
	recipe_free(&r);

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	assert_int_equal(system(cmd), 0);
}

static void test_load(void **state)
{
	(void)state;
	char path[64] = "/tmp/test-recipe-XXXXXX", err[256] = "";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	struct recipe r = { 0 };
	assert_int_equal(write(fd, K "hostname = x\n", strlen(K) + 13), (ssize_t)strlen(K) + 13);
	assert_true(recipe_load(path, &r, err, sizeof(err)));
	assert_string_equal(r.hostname.text, "x");
	assert_string_equal(r.file, path);
	recipe_free(&r);

	assert_int_equal(write(fd, "\0", 1), 1);
	assert_false(recipe_load(path, &r, err, sizeof(err)));
	assert_non_null(strstr(err, "contains a NUL byte"));

	assert_int_equal(ftruncate(fd, (2 << 20)), 0);
	assert_false(recipe_load(path, &r, err, sizeof(err)));
	assert_non_null(strstr(err, "longer than 1 MiB"));
	close(fd);
	unlink(path);

	assert_false(recipe_load(path, &r, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot read the recipe: No such file"));
	assert_null(r.kernel.text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_recipe),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_line_errors),
		cmocka_unit_test(test_missing_kernel),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_hash_in_word),
		cmocka_unit_test(test_check_files),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * `shoji vm create`'s key=value options (src/cli/shoji-create-opts.c) to
 * the JSON of a definition: every --disk key that shoji-vmm takes and a
 * definition can hold reaches the JSON under the definition's name for it;
 * backing-dir= is refused with the reason; mistakes are one line that
 * names the flag and the item.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli/shoji-create-opts.h"

static char err[512];

static json_t *parse_ok(bool (*parse)(const char *, json_t *, char *, size_t), const char *text)
{
	json_t *o = json_object();
	err[0] = '\0';
	if (!parse(text, o, err, sizeof(err)))
		fail_msg("'%s' refused: %s", text, err);
	return o;
}

static void expect_error(bool (*parse)(const char *, json_t *, char *, size_t), const char *text,
			 const char *flag, const char *want)
{
	json_t *o = json_object();
	err[0] = '\0';
	if (parse(text, o, err, sizeof(err)))
		fail_msg("'%s' was accepted", text);
	json_decref(o);
	assert_null(strchr(err, '\n'));
	assert_int_equal(strncmp(err, flag, strlen(flag)), 0);
	if (!strstr(err, want))
		fail_msg("error for '%s' is \"%s\", lacks \"%s\"", text, err, want);
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (!s)
		fail_msg("no string \"%s\"", key);
	return s;
}

/* Every disk key of shoji-vmm --disk that a definition holds. */
static void test_disk_keys(void **state)
{
	(void)state;
	json_t *d = parse_ok(cli_disk_parse, "path=/var/lib/x.qcow2,format=qcow2,readonly=on,"
			     "direct=on,serial=ABCDEFGHIJKLMNOPQRST,aio=io_uring");
	assert_string_equal(str(d, "path"), "/var/lib/x.qcow2");
	assert_string_equal(str(d, "format"), "qcow2");
	assert_true(json_is_true(json_object_get(d, "readonly")));
	assert_true(json_is_true(json_object_get(d, "direct")));
	assert_string_equal(str(d, "serial"), "ABCDEFGHIJKLMNOPQRST");
	assert_string_equal(str(d, "aio"), "io_uring");
	json_decref(d);

	d = parse_ok(cli_disk_parse, "aio=threads,direct=off,readonly=off,path=/x");
	assert_true(json_is_false(json_object_get(d, "readonly")));
	assert_true(json_is_false(json_object_get(d, "direct")));
	assert_string_equal(str(d, "aio"), "threads");
	assert_int_equal(json_object_size(d), 4);
	json_decref(d);
}

/* The daemon's working directory is not the user's. */
static void test_disk_relative_path(void **state)
{
	(void)state;
	char dir[] = "/tmp/cli-create-XXXXXX", cwd[4096], want[4200];
	assert_non_null(mkdtemp(dir));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	FILE *f = fopen("disk.img", "w");
	assert_non_null(f);
	fclose(f);
	json_t *d = parse_ok(cli_disk_parse, "path=disk.img");
	snprintf(want, sizeof(want), "%s/disk.img", dir);
	assert_string_equal(str(d, "path"), want);
	json_decref(d);
	d = parse_ok(cli_disk_parse, "path=missing.img"); /* left for the daemon to name */
	assert_string_equal(str(d, "path"), "missing.img");
	json_decref(d);
	unlink("disk.img");
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void test_disk_errors(void **state)
{
	(void)state;
	expect_error(cli_disk_parse, "path=/x,backing-dir=/srv", "--disk", "shojid --image-dir");
	expect_error(cli_disk_parse, "path=/x,readonly=yes", "--disk", "use readonly=on or readonly=off");
	expect_error(cli_disk_parse, "path=/x,direct=1", "--disk", "use direct=on or direct=off");
	expect_error(cli_disk_parse, "path=/x,cache=none", "--disk", "unknown key 'cache'");
	expect_error(cli_disk_parse, "path=/x,cache=none", "--disk", "path, format, readonly, direct");
	expect_error(cli_disk_parse, "path=/x,readonly=on,readonly=off", "--disk", "given twice");
	expect_error(cli_disk_parse, "path=/x,ro", "--disk", "not key=value");
	expect_error(cli_disk_parse, "path=/x,serial=a,b", "--disk", "may not contain commas");
	expect_error(cli_disk_parse, "path=/x,", "--disk", "empty item");
	expect_error(cli_disk_parse, "path=/x,serial=", "--disk", "empty value");
	expect_error(cli_disk_parse, "readonly=on", "--disk", "path= is missing");
}

static void test_net(void **state)
{
	(void)state;
	json_t *n = parse_ok(cli_net_parse, "user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp::53-:53,"
			     "mac=52:54:00:12:34:56");
	assert_string_equal(str(n, "type"), "user");
	json_t *fw = json_object_get(n, "hostfwd");
	assert_int_equal(json_array_size(fw), 2);
	assert_string_equal(json_string_value(json_array_get(fw, 1)), "udp::53-:53");
	assert_string_equal(str(n, "mac"), "52:54:00:12:34:56");
	json_decref(n);
	n = parse_ok(cli_net_parse, "tap=tap0");
	assert_string_equal(str(n, "type"), "tap");
	assert_string_equal(str(n, "tap"), "tap0");
	assert_null(json_object_get(n, "hostfwd"));
	json_decref(n);
	expect_error(cli_net_parse, "slirp", "--net", "first item names the back end");
	expect_error(cli_net_parse, "user,colour=red", "--net", "unknown key 'colour'");
	expect_error(cli_net_parse, "user,mac=a,mac=b", "--net", "given twice");
}

static void test_vsock(void **state)
{
	(void)state;
	json_t *v = parse_ok(cli_vsock_parse, "cid=3");
	assert_int_equal(json_integer_value(json_object_get(v, "cid")), 3);
	json_decref(v);
	expect_error(cli_vsock_parse, "cid=x", "--vsock", "use a number");
	expect_error(cli_vsock_parse, "3", "--vsock", "not key=value");
	expect_error(cli_vsock_parse, "socket=/x", "--vsock", "unknown key 'socket'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disk_keys),
		cmocka_unit_test(test_disk_relative_path),
		cmocka_unit_test(test_disk_errors),
		cmocka_unit_test(test_net),
		cmocka_unit_test(test_vsock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for src/daemon/vmdef.c and jsonpos.c: a definition a person
 * wrote is accepted with the defaults the docs promise, and every mistake
 * is refused with one line naming the source, the key's line and the key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/jsonpos.h"
#include "daemon/vmdef.h"
#include "daemon/vmm-args.h"

static char dir[64];
static char kernel[128], initrd[128], disk[128], rodisk[128];

static void touch(const char *path, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("x", f);
	fclose(f);
	chmod(path, mode);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/shoji-vmdef-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", dir);
	snprintf(initrd, sizeof(initrd), "%s/initrd", dir);
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	snprintf(rodisk, sizeof(rodisk), "%s/ro.img", dir);
	touch(kernel, 0644);
	touch(initrd, 0644);
	touch(disk, 0644);
	touch(rodisk, 0444);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* A definition with %K for the kernel, %I for the initrd, %D and %R for disks. */
static char *expand(const char *tmpl)
{
	static char out[8192];
	size_t n = 0;
	for (const char *p = tmpl; *p && n < sizeof(out) - 200; p++) {
		const char *sub = NULL;
		if (p[0] == '%' && p[1] == 'K')
			sub = kernel;
		else if (p[0] == '%' && p[1] == 'I')
			sub = initrd;
		else if (p[0] == '%' && p[1] == 'D')
			sub = disk;
		else if (p[0] == '%' && p[1] == 'R')
			sub = rodisk;
		if (sub) {
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s", sub);
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	return out;
}

static void expect_ok(const char *tmpl, struct vmdef *d)
{
	char err[512];
	if (!vmdef_parse(expand(tmpl), "vm.json", NULL, d, err, sizeof(err)))
		fail_msg("refused a valid definition: %s", err);
}

/* The message must be exactly "vm.json:LINE: key 'KEY': ..." and contain `what`. */
static void expect_error(const char *tmpl, int line, const char *key, const char *what)
{
	struct vmdef d;
	char err[512], prefix[128];
	if (vmdef_parse(expand(tmpl), "vm.json", NULL, &d, err, sizeof(err)))
		fail_msg("accepted a bad definition (want an error about %s): %s", key, tmpl);
	snprintf(prefix, sizeof(prefix), "vm.json:%d: key '%s': ", line, key);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, prefix);
	if (!strstr(err, what))
		fail_msg("error '%s' does not say '%s'", err, what);
	assert_null(strchr(err, '\n'));
}

#define BASE "\"name\": \"files\", \"role\": \"service\", \"kernel\": \"%K\""

static void test_minimal_defaults(void **state)
{
	(void)state;
	struct vmdef d;
	expect_ok("{" BASE "}", &d);
	assert_string_equal(d.name, "files");
	assert_int_equal(d.role, VM_ROLE_SERVICE);
	assert_int_equal(d.cpus, 1);
	assert_int_equal(d.memory, 512ull << 20);
	assert_string_equal(d.cmdline, "console=ttyS0");
	assert_true(d.autostart); /* a service VM starts with the daemon */
	assert_int_equal(d.ndisks, 0);
	assert_int_equal(d.nnets, 0);
	assert_int_equal(d.vsock_cid, 0);
	expect_ok("{\"name\": \"desk\", \"role\": \"client\", \"kernel\": \"%K\"}", &d);
	assert_false(d.autostart);
}

static void test_full_definition(void **state)
{
	(void)state;
	struct vmdef d;
	expect_ok("{\n" BASE ",\n \"initrd\": \"%I\", \"cmdline\": \"console=ttyS0 quiet\",\n"
		  " \"cpus\": 4, \"memory\": \"2G\", \"rng\": true, \"autostart\": false,\n"
		  " \"disks\": [{\"path\": \"%D\", \"format\": \"qcow2\"}, {\"path\": \"%R\", \"readonly\": true}],\n"
		  " \"nets\": [{\"type\": \"user\", \"hostfwd\": [\"tcp:127.0.0.1:2222-:22\"], \"mac\": \"52:54:00:12:34:56\"},\n"
		  "          {\"type\": \"tap\", \"tap\": \"tap0\"}],\n"
		  " \"vsock\": {\"cid\": 3}}", &d);
	assert_int_equal(d.cpus, 4);
	assert_int_equal(d.memory, 2ull << 30);
	assert_true(d.rng);
	assert_false(d.autostart);
	assert_int_equal(d.ndisks, 2);
	assert_true(d.disks[0].qcow2);
	assert_false(d.disks[0].readonly);
	assert_true(d.disks[1].readonly);
	assert_int_equal(d.nnets, 2);
	assert_false(d.nets[0].tap);
	assert_int_equal(d.nets[0].nhostfwd, 1);
	assert_string_equal(d.nets[0].mac, "52:54:00:12:34:56");
	assert_true(d.nets[1].tap);
	assert_string_equal(d.nets[1].tap_name, "tap0");
	assert_int_equal(d.vsock_cid, 3);
	assert_string_equal(d.initrd, initrd);
	/* A bare number is MiB, as shoji-vmm --memory. */
	expect_ok("{" BASE ", \"memory\": 64}", &d);
	assert_int_equal(d.memory, 64ull << 20);
	expect_ok("{" BASE ", \"memory\": \"1024\"}", &d);
	assert_int_equal(d.memory, 1024ull << 20);
}

/* What vmdef_to_json writes, vmdef_parse reads back to the same definition. */
static void test_round_trip(void **state)
{
	(void)state;
	struct vmdef a, b;
	expect_ok("{" BASE ", \"cpus\": 2, \"memory\": \"768M\", \"disks\": [{\"path\": \"%R\", \"readonly\": true}],"
		  " \"nets\": [{\"type\": \"user\", \"hostfwd\": [\"tcp:127.0.0.1:1-:2\"], \"host_loopback\": true}],"
		  " \"vsock\": {\"cid\": 9}}", &a);
	json_t *j = vmdef_to_json(&a);
	char *text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	char err[512];
	bool ok = vmdef_parse(text, "out.json", "files", &b, err, sizeof(err));
	free(text);
	if (!ok)
		fail_msg("its own output was refused: %s", err);
	assert_memory_equal(&a, &b, sizeof(a));
}

/* A NIC reaches the host's loopback only when its definition says so, and
 * the VMM is then told so with host-loopback=on; never for a tap NIC. */
static bool argv_has(const struct vmm_argv *a, const char *text)
{
	for (int i = 0; i < a->argc; i++)
		if (strstr(a->argv[i], text))
			return true;
	return false;
}

static void test_net_host_loopback(void **state)
{
	(void)state;
	struct vmdef d;
	struct vm_paths p;
	struct vmm_argv *a = malloc(sizeof(*a));
	assert_non_null(a);
	assert_true(vm_paths_make("/run/shoji", "files", &p));

	expect_ok("{" BASE ", \"nets\": [{\"type\": \"user\"}]}", &d);
	assert_false(d.nets[0].host_loopback);
	assert_true(vmm_argv_build("/bin/shoji-vmm", &d, &p, NULL, 0, a));
	assert_true(argv_has(a, "user"));
	assert_false(argv_has(a, "host-loopback"));

	expect_ok("{" BASE ", \"nets\": [{\"type\": \"user\", \"host_loopback\": true,"
		  " \"hostfwd\": [\"tcp:127.0.0.1:2222-:22\"]}]}", &d);
	assert_true(d.nets[0].host_loopback);
	assert_true(vmm_argv_build("/bin/shoji-vmm", &d, &p, NULL, 0, a));
	assert_true(argv_has(a, "user,hostfwd=tcp:127.0.0.1:2222-:22,host-loopback=on"));

	expect_error("{" BASE ",\n \"nets\": [{\"type\": \"user\",\n \"host_loopback\": \"yes\"}]}", 3,
		     "nets[0].host_loopback", "true or false");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"tap\", \"tap\": \"tap0\", \"host_loopback\": true}]}",
		     1, "nets[0]", "only for \"type\": \"user\"");
	free(a);
}

/* The disk keys of shoji-vmm --disk beyond path, format and readonly:
 * checked as the VMM checks them, passed on to it, and written back only
 * when set (a definition that does not use them reads as it always did). */
static void test_disk_vmm_keys(void **state)
{
	(void)state;
	struct vmdef d, back;
	struct vm_paths p;
	struct vmm_argv *a = malloc(sizeof(*a));
	assert_non_null(a);
	assert_true(vm_paths_make("/run/shoji", "files", &p));

	expect_ok("{" BASE ", \"disks\": [{\"path\": \"%D\", \"direct\": true,"
		  " \"serial\": \"ABCDEFGHIJKLMNOPQRST\", \"aio\": \"threads\"}, {\"path\": \"%D\"}]}", &d);
	assert_true(d.disks[0].direct);
	assert_string_equal(d.disks[0].serial, "ABCDEFGHIJKLMNOPQRST");
	assert_string_equal(d.disks[0].aio, "threads");
	assert_false(d.disks[1].direct);
	assert_string_equal(d.disks[1].serial, "");
	assert_string_equal(d.disks[1].aio, "");
	assert_true(vmm_argv_build("/bin/shoji-vmm", &d, &p, NULL, 0, a));
	char want[256];
	snprintf(want, sizeof(want), "path=%s,format=raw,direct=on,serial=ABCDEFGHIJKLMNOPQRST,aio=threads",
		 disk);
	assert_true(argv_has(a, want));
	snprintf(want, sizeof(want), "path=%s,format=raw", disk);
	assert_true(argv_has(a, want));
	assert_false(argv_has(a, "direct=off"));

	json_t *j = vmdef_to_json(&d);
	json_t *d1 = json_array_get(json_object_get(j, "disks"), 1);
	assert_null(json_object_get(d1, "direct"));
	assert_null(json_object_get(d1, "serial"));
	assert_null(json_object_get(d1, "aio"));
	char *text = json_dumps(j, 0);
	json_decref(j);
	char err[512];
	bool ok = vmdef_parse(text, "out.json", "files", &back, err, sizeof(err));
	free(text);
	if (!ok)
		fail_msg("its own output was refused: %s", err);
	assert_memory_equal(&d, &back, sizeof(d));

	expect_error("{" BASE ",\n \"disks\": [{\"path\": \"%D\",\n \"direct\": \"on\"}]}", 3,
		     "disks[0].direct", "true or false");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"serial\": \"ABCDEFGHIJKLMNOPQRSTU\"}]}", 1,
		     "disks[0].serial", "1 to 20 printable ASCII");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"serial\": \"a b\"}]}", 1,
		     "disks[0].serial", "without spaces or commas");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"serial\": \"a,b\"}]}", 1,
		     "disks[0].serial", "without spaces or commas");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"serial\": \"\"}]}", 1,
		     "disks[0].serial", "1 to 20");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"serial\": 7}]}", 1,
		     "disks[0].serial", "printable ASCII");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"aio\": \"native\"}]}", 1,
		     "disks[0].aio", "\"auto\", \"threads\" or \"io_uring\"");
	free(a);
}

static void test_syntax_errors(void **state)
{
	(void)state;
	struct vmdef d;
	char err[512];
	assert_false(vmdef_parse("{\n\"name\": \"a\",\n\"role\" \"client\"}", "f.json", NULL, &d, err, sizeof(err)));
	assert_non_null(strstr(err, "f.json:3: not valid JSON"));
	assert_false(vmdef_parse("", "f.json", NULL, &d, err, sizeof(err)));
	assert_non_null(strstr(err, "f.json:1: not valid JSON"));
	assert_false(vmdef_parse("[1, 2]", "f.json", NULL, &d, err, sizeof(err)));
	assert_string_equal(err, "f.json:1: the definition must be a JSON object");
	/* The same key twice: the second one would silently win. */
	assert_false(vmdef_parse("{\"cpus\": 1,\n \"cpus\": 2}", "f.json", NULL, &d, err, sizeof(err)));
	assert_non_null(strstr(err, "f.json:2: not valid JSON"));
}

static void test_unknown_keys_named_with_line(void **state)
{
	(void)state;
	expect_error("{" BASE ",\n\n \"cpu\": 2}", 3, "cpu", "unknown key");
	expect_error("{" BASE ",\n \"disks\": [\n {\"path\": \"%D\"},\n {\"path\": \"%D\",\n  \"fromat\": \"raw\"}]}",
		     5, "disks[1].fromat", "unknown key");
	expect_error("{" BASE ",\n \"nets\": [{\"type\": \"user\",\n \"hostfw\": []}]}", 3, "nets[0].hostfw",
		     "unknown key");
}

static void test_required_keys(void **state)
{
	(void)state;
	expect_error("{\"role\": \"client\", \"kernel\": \"%K\"}", 1, "name", "is required");
	expect_error("{\"name\": \"a\", \"kernel\": \"%K\"}", 1, "role", "is required");
	expect_error("{\"name\": \"a\", \"role\": \"client\"}", 1, "kernel", "is required");
}

static void test_bad_names_and_roles(void **state)
{
	(void)state;
	expect_error("{\"name\": \"Files\", \"role\": \"client\", \"kernel\": \"%K\"}", 1, "name", "a-z");
	expect_error("{\"name\": \"-x\", \"role\": \"client\", \"kernel\": \"%K\"}", 1, "name", "a-z");
	expect_error("{\"name\": \"a/b\", \"role\": \"client\", \"kernel\": \"%K\"}", 1, "name", "a-z");
	expect_error("{\"name\": \"\", \"role\": \"client\", \"kernel\": \"%K\"}", 1, "name", "a-z");
	expect_error("{\"name\": \"abcdefghijabcdefghijabcdefghijabc\", \"role\": \"client\", \"kernel\": \"%K\"}",
		     1, "name", "longer than 32");
	expect_error("{\"name\": 7, \"role\": \"client\", \"kernel\": \"%K\"}", 1, "name", "must be a string");
	expect_error("{\"name\": \"a\",\n \"role\": \"server\", \"kernel\": \"%K\"}", 2, "role", "\"client\" or \"service\"");
	assert_true(vmdef_name_valid("a"));
	assert_true(vmdef_name_valid("files-1_x"));
	assert_false(vmdef_name_valid("a.b"));
	assert_false(vmdef_name_valid(".."));
}

static void test_name_must_match_file(void **state)
{
	(void)state;
	struct vmdef d;
	char err[512];
	assert_false(vmdef_parse(expand("{\n" BASE "}"), "/s/vms/other.json", "other", &d, err, sizeof(err)));
	assert_non_null(strstr(err, "/s/vms/other.json:2: key 'name': 'files' differs from the file's name 'other'"));
}

static void test_missing_files(void **state)
{
	(void)state;
	expect_error("{\"name\": \"a\", \"role\": \"client\",\n \"kernel\": \"/nonexistent/vmlinuz\"}", 2, "kernel",
		     "No such file or directory");
	expect_error("{\"name\": \"a\", \"role\": \"client\", \"kernel\": \"vmlinuz\"}", 1, "kernel", "absolute path");
	expect_error("{\"name\": \"a\", \"role\": \"client\", \"kernel\": \"/tmp\"}", 1, "kernel", "not a regular file");
	expect_error("{" BASE ",\n \"initrd\": \"/nonexistent/initrd\"}", 2, "initrd", "No such file");
	expect_error("{" BASE ",\n \"disks\": [{\"path\": \"/nonexistent.img\"}]}", 2, "disks[0].path", "No such file");
	expect_error("{" BASE ", \"disks\": [{\"format\": \"raw\"}]}", 1, "disks[0]", "needs a \"path\"");
	if (geteuid() != 0) /* root may write anything: the mode check cannot fail */
		expect_error("{" BASE ", \"disks\": [{\"path\": \"%R\"}]}", 1, "disks[0].path", "Permission denied");
}

static void test_bad_sizes_and_counts(void **state)
{
	(void)state;
	expect_error("{" BASE ",\n \"cpus\": 0}", 2, "cpus", "from 1 to 254");
	expect_error("{" BASE ", \"cpus\": 255}", 1, "cpus", "from 1 to 254");
	expect_error("{" BASE ", \"cpus\": \"2\"}", 1, "cpus", "from 1 to 254");
	expect_error("{" BASE ", \"cpus\": 1.5}", 1, "cpus", "from 1 to 254");
	expect_error("{" BASE ",\n \"memory\": \"lots\"}", 2, "memory", "not a size");
	expect_error("{" BASE ", \"memory\": \"16M\"}", 1, "memory", "from 32M to 1T");
	expect_error("{" BASE ", \"memory\": \"2T\"}", 1, "memory", "from 32M to 1T");
	expect_error("{" BASE ", \"memory\": \"33000K\"}", 1, "memory", "whole number of MiB");
	expect_error("{" BASE ", \"memory\": -1}", 1, "memory", "must be a size");
	expect_error("{" BASE ", \"memory\": true}", 1, "memory", "must be a size");
	expect_error("{" BASE ", \"disks\": {}}", 1, "disks", "list of disks");
	expect_error("{" BASE ", \"disks\": [{\"path\":\"%D\"},{\"path\":\"%D\"},{\"path\":\"%D\"},{\"path\":\"%D\"},"
		     "{\"path\":\"%D\"},{\"path\":\"%D\"},{\"path\":\"%D\"},{\"path\":\"%D\"},{\"path\":\"%D\"}]}",
		     1, "disks", "at most 8");
	expect_error("{" BASE ", \"disks\": [\"%D\"]}", 1, "disks[0]", "must be an object");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"format\": \"vmdk\"}]}", 1, "disks[0].format",
		     "\"raw\" or \"qcow2\"");
	expect_error("{" BASE ", \"disks\": [{\"path\": \"%D\", \"readonly\": \"yes\"}]}", 1, "disks[0].readonly",
		     "true or false");
}

static void test_bad_devices(void **state)
{
	(void)state;
	expect_error("{" BASE ", \"nets\": [{}]}", 1, "nets[0]", "needs \"type\"");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"bridge\"}]}", 1, "nets[0].type", "\"user\" or \"tap\"");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"tap\"}]}", 1, "nets[0]", "needs \"tap\"");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"user\", \"tap\": \"tap0\"}]}", 1, "nets[0]", "only for");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"tap\", \"tap\": \"tap0\", \"hostfwd\": [\"tcp:1:2-:3\"]}]}", 1,
		     "nets[0]", "only for \"type\": \"user\"");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"tap\", \"tap\": \"a,b\"}]}", 1, "nets[0].tap", "interface name");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"user\", \"hostfwd\": [\"2222:22\"]}]}", 1,
		     "nets[0].hostfwd[0]", "tcp:HOSTADDR");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"user\", \"hostfwd\": [\"tcp:1:2-:3,mac=x\"]}]}", 1,
		     "nets[0].hostfwd[0]", "tcp:HOSTADDR");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"user\", \"mac\": \"52:54:00:12:34\"}]}", 1, "nets[0].mac",
		     "MAC address");
	expect_error("{" BASE ", \"nets\": [{\"type\": \"user\", \"mac\": \"01:54:00:12:34:56\"}]}", 1, "nets[0].mac",
		     "multicast");
	expect_error("{" BASE ", \"nets\": \"user\"}", 1, "nets", "list of NICs");
	expect_error("{" BASE ", \"vsock\": 3}", 1, "vsock", "one key, \"cid\"");
	expect_error("{" BASE ", \"vsock\": {\"cid\": 3, \"socket\": \"/x\"}}", 1, "vsock", "one key");
	expect_error("{" BASE ",\n \"vsock\": {\n \"cid\": 2}}", 3, "vsock.cid", "from 3 to");
	expect_error("{" BASE ", \"vsock\": {\"cid\": 4294967295}}", 1, "vsock.cid", "from 3 to");
	expect_error("{" BASE ", \"rng\": 1}", 1, "rng", "true or false");
	expect_error("{" BASE ", \"autostart\": \"yes\"}", 1, "autostart", "true or false");
	expect_error("{" BASE ", \"cmdline\": 5}", 1, "cmdline", "must be a string");
}

static void test_dependencies(void **state)
{
	(void)state;
	expect_error("{\"name\": \"d\", \"role\": \"client\", \"kernel\": \"%K\",\n \"depends_on\": \"d\"}", 2,
		     "depends_on", "itself");
	expect_error("{" BASE ", \"depends_on\": \"x\"}", 1, "depends_on", "only client VMs");
	expect_error("{\"name\": \"d\", \"role\": \"client\", \"kernel\": \"%K\", \"depends_on\": \"A B\"}", 1,
		     "depends_on", "name of a service VM");
}

static void test_jsonpos(void **state)
{
	(void)state;
	const char *t = "{\n \"a\": 1,\n \"b\": {\"c\": [\n  {\"d\": \"}\\\"\"},\n  {\"d\": 2}]},\n \"e\": null}";
	assert_int_equal(jsonpos_key_line(t, "a"), 2);
	assert_int_equal(jsonpos_key_line(t, "b"), 3);
	assert_int_equal(jsonpos_key_line(t, "b.c"), 3);
	assert_int_equal(jsonpos_key_line(t, "b.c[0].d"), 4);
	assert_int_equal(jsonpos_key_line(t, "b.c[1].d"), 5);
	assert_int_equal(jsonpos_key_line(t, "e"), 6);
	assert_int_equal(jsonpos_key_line(t, "d"), 0);
	assert_int_equal(jsonpos_key_line("{\"a\": [[[[", "a"), 1); /* truncated: no overrun */
	assert_int_equal(jsonpos_key_line("", "a"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_full_definition),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_net_host_loopback),
		cmocka_unit_test(test_disk_vmm_keys),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_unknown_keys_named_with_line),
		cmocka_unit_test(test_required_keys),
		cmocka_unit_test(test_bad_names_and_roles),
		cmocka_unit_test(test_name_must_match_file),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_bad_sizes_and_counts),
		cmocka_unit_test(test_bad_devices),
		cmocka_unit_test(test_dependencies),
		cmocka_unit_test(test_jsonpos),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * Unit tests for src/daemon/config.c, shojid's configuration: a file with
 * every key, comments and blanks is read as documented (shojid(8),
 * packaging/shojid.conf); the environment overrides the file and flags
 * override both; and every mistake is refused in one line that starts
 * with FILE:LINE and names the key and what would be accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "daemon/config.h"

static char dir[64], conf[128], images[4][128];
static char err[PATH_MAX + 512];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/shoji-config-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/shojid.conf", dir);
	for (int i = 0; i < 4; i++) {
		snprintf(images[i], sizeof(images[i]), "%s/images%d", dir, i);
		assert_int_equal(mkdir(images[i], 0700), 0);
	}
	unsetenv("SHOJI_STATE_DIR");
	unsetenv("SHOJI_RUN_DIR");
	unsetenv("SHOJI_SOCKET");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_conf(const char *text, size_t len)
{
	FILE *f = fopen(conf, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
}

static bool load(const char *text, struct shojid_config *c)
{
	write_conf(text, strlen(text));
	config_defaults(c);
	err[0] = '\0';
	return config_load(c, conf, true, err, sizeof(err));
}

/* `text` is refused at `line` with one line holding every string of `want`. */
static void refused(const char *text, unsigned line, const char *const want[])
{
	struct shojid_config c;
	if (load(text, &c))
		fail_msg("accepted: %s", text);
	char where[160];
	snprintf(where, sizeof(where), "%s:%u: ", conf, line);
	if (strncmp(err, where, strlen(where)) != 0)
		fail_msg("'%s' does not start with '%s'", err, where);
	assert_null(strchr(err, '\n'));
	for (size_t i = 0; want[i]; i++)
		if (!strstr(err, want[i]))
			fail_msg("'%s' lacks '%s'", err, want[i]);
}

#define REFUSED(text, line, ...) refused(text, line, (const char *const[]){ __VA_ARGS__, NULL })

static void test_defaults_without_file(void **state)
{
	(void)state;
	struct shojid_config c;
	config_defaults(&c);
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/none.conf", dir);
	assert_true(config_load(&c, missing, false, err, sizeof(err)));
	assert_string_equal(c.state_dir, "/var/lib/shoji");
	assert_string_equal(c.run_dir, "/run/shoji");
	assert_string_equal(c.socket, "");
	assert_string_equal(c.vmm, "");
	assert_int_equal(c.nimage_dirs, 0);
	assert_int_equal(c.stop_timeout_s, 30);
	assert_int_equal(c.start_timeout_s, 30);
	assert_int_equal(c.backoff_ms, 1000);
	assert_int_equal(c.vmm_log_max, 8 << 20);
	assert_int_equal(c.level, LOG_LEVEL_INFO);
	assert_int_equal(c.jail, geteuid() == 0);

	/* Named with --config, a missing file is an error. */
	assert_false(config_load(&c, missing, true, err, sizeof(err)));
	assert_non_null(strstr(err, "none.conf: No such file or directory"));
	assert_non_null(strstr(err, "--config"));
}

static void test_every_key(void **state)
{
	(void)state;
	char text[2048];
	snprintf(text, sizeof(text),
		 "# shojid settings\n"
		 "\n"
		 "   # an indented comment\n"
		 "state-dir = /srv/shoji state\n"
		 "run-dir=/run/x\n"
		 "\tsocket\t=\t/run/x/api.sock \t\n"
		 "vmm = /opt/shoji-vmm#1\r\n"
		 "jail = off\n"
		 "image-dir = %s\n"
		 "image-dir = %s\n"
		 "stop-timeout = 60\n"
		 "start-timeout = 5\n"
		 "backoff-ms = 250\n"
		 "vmm-log-max = 512K\n"
		 "log-level = debug", /* no newline at the end */
		 images[0], images[1]);
	struct shojid_config c;
	if (!load(text, &c))
		fail_msg("%s", err);
	assert_string_equal(c.state_dir, "/srv/shoji state");
	assert_string_equal(c.run_dir, "/run/x");
	assert_string_equal(c.socket, "/run/x/api.sock");
	assert_string_equal(c.vmm, "/opt/shoji-vmm#1");
	assert_false(c.jail);
	assert_int_equal(c.nimage_dirs, 2);
	assert_string_equal(c.image_dirs[0], images[0]);
	assert_string_equal(c.image_dirs[1], images[1]);
	assert_int_equal(c.stop_timeout_s, 60);
	assert_int_equal(c.start_timeout_s, 5);
	assert_int_equal(c.backoff_ms, 250);
	assert_int_equal(c.vmm_log_max, 512 << 10);
	assert_int_equal(c.level, LOG_LEVEL_DEBUG);
}

static const struct kvopt_key *key(const char *name)
{
	const struct kvopt_key *k = kvopt_find(&config_spec, name, strlen(name));
	assert_non_null(k);
	return k;
}

/* Defaults, then the file, then the environment, then the flags. */
static void test_overrides(void **state)
{
	(void)state;
	char text[512];
	snprintf(text, sizeof(text), "state-dir = /from/file\nrun-dir = /file/run\n"
		 "stop-timeout = 60\nimage-dir = %s\nimage-dir = %s\n", images[0], images[1]);
	struct shojid_config c;
	assert_true(load(text, &c));
	setenv("SHOJI_RUN_DIR", "/env/run", 1);
	setenv("SHOJI_SOCKET", "", 1); /* empty: not set */
	assert_true(config_env(&c, err, sizeof(err)));
	unsetenv("SHOJI_RUN_DIR");
	unsetenv("SHOJI_SOCKET");
	assert_string_equal(c.state_dir, "/from/file");
	assert_string_equal(c.run_dir, "/env/run");
	assert_string_equal(c.socket, "");

	assert_true(config_flag(&c, key("stop-timeout"), "7", err, sizeof(err)));
	assert_true(config_flag(&c, key("run-dir"), "/flag/run", err, sizeof(err)));
	assert_int_equal(c.stop_timeout_s, 7);
	assert_string_equal(c.run_dir, "/flag/run");
	/* The first --image-dir replaces the file's list, the next adds to it. */
	assert_true(config_flag(&c, key("image-dir"), images[2], err, sizeof(err)));
	assert_int_equal(c.nimage_dirs, 1);
	assert_string_equal(c.image_dirs[0], images[2]);
	assert_true(config_flag(&c, key("image-dir"), images[3], err, sizeof(err)));
	assert_int_equal(c.nimage_dirs, 2);
	assert_string_equal(c.image_dirs[1], images[3]);
}

/* A flag's mistake reads as it did before the file existed: "--KEY VALUE: why". */
static void test_flag_errors(void **state)
{
	(void)state;
	struct shojid_config c;
	config_defaults(&c);
	assert_false(config_flag(&c, key("stop-timeout"), "0", err, sizeof(err)));
	assert_string_equal(err, "--stop-timeout 0: must be a number of seconds from 1 to 3600");
	assert_false(config_flag(&c, key("vmm-log-max"), "1K", err, sizeof(err)));
	assert_string_equal(err, "--vmm-log-max 1K: must be a size from 4K to 64G, e.g. 8M");
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nowhere", dir);
	assert_false(config_flag(&c, key("image-dir"), missing, err, sizeof(err)));
	assert_non_null(strstr(err, "/nowhere: No such file or directory"));
	setenv("SHOJI_STATE_DIR", "/x", 1);
	char longer[PATH_MAX + 8];
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	setenv("SHOJI_SOCKET", longer, 1);
	assert_false(config_env(&c, err, sizeof(err)));
	unsetenv("SHOJI_STATE_DIR");
	unsetenv("SHOJI_SOCKET");
	assert_string_equal(err, "$SHOJI_SOCKET: longer than 4095 bytes");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	REFUSED("# ok\nstop-timeout 60\n", 2, "'stop-timeout 60' is not key = value",
		"e.g. stop-timeout = 60");
	REFUSED("\n\n = 60\n", 3, "no key before '='");
	REFUSED("stop-timeout =   \n", 1, "stop-timeout has an empty value", "remove the line");
	REFUSED("stop-timeout = 60\nlog-level = info\nstop-timeout = 61\n", 3,
		"stop-timeout given twice (first on line 1)");
	write_conf("state-dir = /a\0b\n", 17);
	struct shojid_config c;
	config_defaults(&c);
	assert_false(config_load(&c, conf, true, err, sizeof(err)));
	assert_non_null(strstr(err, ":1: a NUL byte"));

	static char huge[PATH_MAX + 256];
	memset(huge, 'a', sizeof(huge) - 1);
	memcpy(huge, "vmm = /", 7);
	REFUSED(huge, 1, "line longer than");
	/* A value of a path's length fits in a line, but not in a path. */
	huge[PATH_MAX + 7] = '\0';
	REFUSED(huge, 1, "vmm = /aaa", "longer than 4095 bytes");

	/* A directory is no configuration file. */
	config_defaults(&c);
	assert_false(config_load(&c, dir, true, err, sizeof(err)));
	assert_non_null(strstr(err, dir));
	assert_null(strchr(err, '\n'));
}

static void test_unknown_keys(void **state)
{
	(void)state;
	REFUSED("stat-dir = /x\n", 1, "unknown key 'stat-dir'; did you mean 'state-dir'?");
	REFUSED("\nstop-timeuot = 5\n", 2, "unknown key 'stop-timeuot'; did you mean 'stop-timeout'?");
	REFUSED("config = /etc/other.conf\n", 1, "unknown key 'config'; keys are state-dir, run-dir",
		"log-level");
	REFUSED("help = yes\n", 1, "unknown key 'help'");
}

static void test_bad_values(void **state)
{
	(void)state;
	REFUSED("stop-timeout = 0\n", 1, "stop-timeout = 0: must be a number of seconds from 1 to 3600");
	REFUSED("stop-timeout = 60 # seconds\n", 1, "stop-timeout = 60 # seconds: must be a number");
	REFUSED("start-timeout = 3601\n", 1, "start-timeout = 3601: must be a number of seconds");
	REFUSED("backoff-ms = 5\n", 1, "backoff-ms = 5: must be a number from 10 to 60000");
	REFUSED("vmm-log-max = 1K\n", 1, "vmm-log-max = 1K: must be a size from 4K to 64G, e.g. 8M");
	REFUSED("vmm-log-max = lots\n", 1, "vmm-log-max = lots: must be a size");
	REFUSED("log-level = loud\n", 1, "log-level = loud: use error, warn, info or debug");
	REFUSED("jail = yes\n", 1, "jail = yes: use on or off");
	if (geteuid() != 0)
		REFUSED("jail = on\n", 1, "jail = on: needs root", "use off");

	char text[1024];
	snprintf(text, sizeof(text), "image-dir = %s/nowhere\n", dir);
	REFUSED(text, 1, "image-dir = ", "/nowhere: No such file or directory");
	snprintf(text, sizeof(text), "image-dir = %s\n", conf);
	REFUSED(text, 1, "shojid.conf: not a directory");
	snprintf(text, sizeof(text), "image-dir = %s\nimage-dir = %s\nimage-dir = %s\n"
		 "image-dir = %s\nimage-dir = %s\n", images[0], images[1], images[2], images[3], images[0]);
	REFUSED(text, 5, "at most 4 image directories");
}

static const char *example; /* packaging/shojid.conf, from the command line */

/*
 * The shipped example names every key, and its commented lines, uncommented,
 * are the defaults (but for the paths it shows as examples and jail, whose
 * default depends on the user).
 */
static void test_example_file(void **state)
{
	(void)state;
	if (!example)
		skip();
	FILE *f = fopen(example, "r");
	assert_non_null(f);
	static char text[8192];
	size_t used = 0;
	bool named[KVOPT_MAX_KEYS] = { false };
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char name[64];
		if (sscanf(line, "#%63[a-z-] =", name) != 1)
			continue;
		const struct kvopt_key *k = kvopt_find(&config_spec, name, strlen(name));
		if (!k)
			continue;
		named[k - config_spec.keys] = true;
		if (strcmp(name, "image-dir") && strcmp(name, "vmm") && strcmp(name, "socket") &&
		    strcmp(name, "jail"))
			used += (size_t)snprintf(text + used, sizeof(text) - used, "%s", line + 1);
	}
	fclose(f);
	for (size_t i = 0; i < config_spec.nkeys; i++)
		if (!named[i])
			fail_msg("%s does not show %s", example, config_spec.keys[i].name);
	struct shojid_config c, d;
	if (!load(text, &c))
		fail_msg("%s", err);
	config_defaults(&d);
	assert_memory_equal(&c, &d, sizeof(c));
}

int main(int argc, char **argv)
{
	example = argc > 1 ? argv[1] : NULL;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_without_file),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_flag_errors),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_example_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

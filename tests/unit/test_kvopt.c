/*
 * Unit tests for src/base/kvopt.h, the key=value splitter behind
 * shoji-vmm's --disk, --net, --vsock and --jail and shoji's --disk: every
 * item reaches its key's function in order, and every mistake is refused
 * in one line that names the flag, the item and what would be accepted.
 * Also errbuf_fail (base/errbuf.h), which writes those lines.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/errbuf.h"
#include "base/kvopt.h"

/* What the test keys collected: the last name=, every tag=, the flag. */
struct got {
	char name[64];
	char tags[4][16];
	unsigned ntags;
	bool flag;
	char order[64];   /* keys in the order their values arrived */
};

static void note(struct got *g, const char *key)
{
	size_t n = strlen(g->order);
	snprintf(g->order + n, sizeof(g->order) - n, "%s%s", n ? " " : "", key);
}

static bool set_name(void *ctx, const char *value, char *err, size_t errlen)
{
	struct got *g = ctx;
	if (strlen(value) >= sizeof(g->name))
		return errbuf_fail(err, errlen, "--test name=%s: too long", value);
	strcpy(g->name, value);
	note(g, "name");
	return true;
}

static bool set_tag(void *ctx, const char *value, char *err, size_t errlen)
{
	struct got *g = ctx;
	if (g->ntags == 4)
		return errbuf_fail(err, errlen, "--test tag=%s: at most 4 tags", value);
	snprintf(g->tags[g->ntags++], sizeof(g->tags[0]), "%s", value);
	note(g, "tag");
	return true;
}

static bool set_flag(void *ctx, const char *value, char *err, size_t errlen)
{
	struct got *g = ctx;
	note(g, "flag");
	return kvopt_on_off("--test", "flag", value, &g->flag, err, errlen);
}

static bool set_label(void *ctx, const char *value, char *err, size_t errlen)
{
	(void)value, (void)err, (void)errlen;
	note(ctx, "label");
	return true;
}

static const struct kvopt_key keys[] = {
	{ .name = "name", .set = set_name, .required = true },
	{ .name = "tag", .set = set_tag, .repeat = true },
	{ .name = "flag", .set = set_flag },
	{ .name = "label", .set = set_label, .free_text = true },
};

static const struct kvopt_spec spec = {
	.option = "--test",
	.syntax = "name=N[,tag=T]...[,flag=on|off][,label=L]",
	.keys = keys,
	.nkeys = sizeof(keys) / sizeof(keys[0]),
};

static struct got got;
static char err[512];

static bool parse(const char *text)
{
	memset(&got, 0, sizeof(got));
	memset(err, 0, sizeof(err));
	return kvopt_parse(&spec, text, &got, err, sizeof(err));
}

/* Refused, in one line that starts with the flag and holds every word. */
static void expect_error(const char *text, ...)
{
	if (parse(text))
		fail_msg("'%s' was accepted", text);
	assert_null(strchr(err, '\n'));
	assert_int_equal(strncmp(err, "--test", 6), 0);
	va_list ap;
	va_start(ap, text);
	for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *))
		if (!strstr(err, w))
			fail_msg("error for '%s' is \"%s\", lacks \"%s\"", text, err, w);
	va_end(ap);
}

static void test_good_input(void **state)
{
	(void)state;
	assert_true(parse("name=a"));
	assert_string_equal(got.name, "a");
	assert_string_equal(err, "");
	assert_true(parse("tag=x,name=b=c,flag=on,tag=y,label=l"));
	assert_string_equal(got.name, "b=c"); /* the first '=' splits */
	assert_int_equal(got.ntags, 2);
	assert_string_equal(got.tags[0], "x");
	assert_string_equal(got.tags[1], "y");
	assert_true(got.flag);
	assert_string_equal(got.order, "tag name flag tag label");
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error("name=a,colour=red", "colour=red", "unknown key 'colour'",
		     "keys are name, tag, flag, label", NULL);
	expect_error("name=a,=x", "unknown key ''", NULL);
	expect_error("Name=a", "unknown key 'Name'", NULL); /* keys are case-sensitive */
}

static void test_duplicate_key(void **state)
{
	(void)state;
	expect_error("name=a,flag=on,name=b", "name=b", "key 'name' given twice", NULL);
	assert_string_equal(got.name, "a"); /* stopped before the second value */
	expect_error("name=a,flag=on,flag=on", "key 'flag' given twice", NULL);
	assert_true(parse("name=a,tag=1,tag=2,tag=3")); /* repeat: true */
	expect_error("name=a,tag=1,tag=2,tag=3,tag=4,tag=5", "at most 4 tags", NULL);
}

static void test_missing_equals(void **state)
{
	(void)state;
	expect_error("name=a,flag", "'flag'", "not key=value", "use name=N[,tag=T]", NULL);
	expect_error("name", "'name'", "not key=value", NULL);
	/* After a free-text key the stray item is the rest of its value. */
	expect_error("name=a,label=x,y", "label", "'y' follows a comma",
		     "a label may not contain commas", NULL);
	expect_error("name=a,tag=x,y", "'y'", "not key=value", NULL);
}

static void test_empty(void **state)
{
	(void)state;
	expect_error("", "empty item", "use name=N", NULL);
	expect_error("name=a,", "empty item", "doubled or trailing comma", NULL);
	expect_error("name=a,,flag=on", "empty item", NULL);
	expect_error(",name=a", "empty item", NULL);
	expect_error("name=", "name=", "empty value", NULL);
	expect_error("name=a,tag=", "tag=", "empty value", NULL);
}

static void test_required(void **state)
{
	(void)state;
	expect_error("flag=on", "flag=on", "name= is missing", "use name=N", NULL);
	expect_error("tag=x,label=y", "name= is missing", NULL);
}

static void test_bool_values(void **state)
{
	(void)state;
	assert_true(parse("name=a,flag=on"));
	assert_true(got.flag);
	assert_true(parse("name=a,flag=off"));
	assert_false(got.flag);
	const char *bad[] = { "yes", "no", "ON", "Off", "1", "0", "true", "of", "on " };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64], want[32];
		snprintf(text, sizeof(text), "name=a,flag=%s", bad[i]);
		snprintf(want, sizeof(want), "flag=%s: ", bad[i]);
		expect_error(text, want, "use flag=on or flag=off", NULL);
	}
}

/* A value up to KVOPT_VALUE_MAX bytes reaches its key; a longer one is refused. */
static void test_value_too_long(void **state)
{
	(void)state;
	static char text[KVOPT_VALUE_MAX + 64];
	memset(text, 'x', sizeof(text));
	memcpy(text, "name=a,label=", 13);
	text[13 + KVOPT_VALUE_MAX] = '\0';
	assert_true(parse(text));
	text[13 + KVOPT_VALUE_MAX] = 'x';
	text[13 + KVOPT_VALUE_MAX + 1] = '\0';
	expect_error(text, "label=xxx", "value too long", NULL);
}

static void test_errbuf(void **state)
{
	(void)state;
	char small[8];
	errno = ENOENT;
	assert_false(errbuf_fail(small, sizeof(small), "%s %d", "abcdef", 42));
	assert_string_equal(small, "abcdef "); /* truncated, terminated */
	assert_int_equal(errno, ENOENT);
	char buf[64];
	errbuf_fail(buf, sizeof(buf), "x: %m");
	assert_string_equal(buf, "x: No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_input),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_missing_equals),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_required),
		cmocka_unit_test(test_bool_values),
		cmocka_unit_test(test_value_too_long),
		cmocka_unit_test(test_errbuf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

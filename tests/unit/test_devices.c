/*
 * Unit tests for the table of device kinds (src/vmm/devices.h): every kind
 * is complete (option, --help lines, parser, create and destroy), its
 * option has a line of its own in --help, a flag kind counts each use, and
 * a kind given more often than it may be is refused in one line naming it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/devices.h"
#include "vmm/options.h"

static void test_kinds_complete(void **state)
{
	(void)state;
	assert_true(VMM_NDEVICES > 0);
	for (unsigned i = 0; i < VMM_NDEVICES; i++) {
		const struct vmm_device_slot *s = &vmm_devices[i];
		const struct vmm_device_kind *k = s->kind;
		assert_non_null(k->option);
		assert_non_null(k->usage);
		assert_non_null(k->parse);
		assert_non_null(k->create);
		assert_non_null(k->destroy);
		assert_true(s->most >= 1);
		assert_true(s->value_size > 0);
		/* Its own line of --help, starting with its option. */
		char head[64];
		snprintf(head, sizeof(head), "  --%s", k->option);
		assert_memory_equal(k->usage, head, strlen(head));
		assert_int_equal(k->usage[strlen(k->usage) - 1], '\n');
		for (unsigned j = 0; j < i; j++)
			assert_string_not_equal(vmm_devices[j].kind->option, k->option);
	}
}

static void test_help_lists_every_kind(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	options_print_usage(f);
	fclose(f);
	assert_non_null(strstr(text, options_usage));
	for (unsigned i = 0; i < VMM_NDEVICES; i++)
		assert_non_null(strstr(text, vmm_devices[i].kind->usage));
	assert_non_null(strstr(text, "Exit status:"));
	free(text);
}

static const struct vmm_device_slot *find(const char *option)
{
	for (unsigned i = 0; i < VMM_NDEVICES; i++)
		if (strcmp(vmm_devices[i].kind->option, option) == 0)
			return &vmm_devices[i];
	fail_msg("no device kind --%s", option);
	return NULL;
}

static void test_counting(void **state)
{
	(void)state;
	struct vmm_options o;
	char err[256];
	memset(&o, 0, sizeof(o));
	const struct vmm_device_slot *rng = find("rng");
	assert_int_equal(vmm_device_count(rng, &o), 0);
	assert_true(vmm_device_parse(rng, NULL, &o, err, sizeof(err)));
	assert_int_equal(vmm_device_count(rng, &o), 1);
	assert_true(*(const bool *)vmm_device_values(rng, &o));
	assert_false(vmm_device_parse(rng, NULL, &o, err, sizeof(err)));
	assert_string_equal(err, "--rng given twice; give it once");

	const struct vmm_device_slot *net = find("net");
	for (unsigned i = 0; i < net->most; i++)
		assert_true(vmm_device_parse(net, "user", &o, err, sizeof(err)));
	assert_int_equal(vmm_device_count(net, &o), net->most);
	assert_int_equal(o.nnets, net->most);
	assert_false(vmm_device_parse(net, "user", &o, err, sizeof(err)));
	assert_string_equal(err, "--net given more than 8 times");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds_complete),
		cmocka_unit_test(test_help_lists_every_kind),
		cmocka_unit_test(test_counting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

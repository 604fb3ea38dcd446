/*
 * pvpanic (src/dev/pvpanic.h): the event byte a guest reads and writes,
 * with a recording callback, and the device as it appears on the PCI bus.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dev/pci.h"
#include "dev/pvpanic.h"

static unsigned calls;
static uint8_t last_events;

static void record(void *ctx, uint8_t events)
{
	(void)ctx;
	calls++;
	last_events = events;
}

static void test_event_byte(void **state)
{
	(void)state;
	struct pvpanic pv = { record, NULL };
	uint8_t b = 0;
	pvpanic_io_ops.read(&pv, 0, &b, 1);
	assert_int_equal(b, PVPANIC_EVENT_PANICKED | PVPANIC_EVENT_CRASH_LOADED);
	pvpanic_io_ops.read(&pv, 1, &b, 1);
	assert_int_equal(b, 0);

	calls = 0;
	uint8_t panicked = PVPANIC_EVENT_PANICKED;
	pvpanic_io_ops.write(&pv, 0, &panicked, 1);
	assert_int_equal(calls, 1);
	assert_int_equal(last_events, PVPANIC_EVENT_PANICKED);

	uint8_t unknown = 0xfc; /* only bits the host does not know */
	pvpanic_io_ops.write(&pv, 0, &unknown, 1);
	assert_int_equal(calls, 1);
	uint8_t mixed = 0x80 | PVPANIC_EVENT_CRASH_LOADED;
	pvpanic_io_ops.write(&pv, 0, &mixed, 1);
	assert_int_equal(calls, 2);
	assert_int_equal(last_events, PVPANIC_EVENT_CRASH_LOADED);
	pvpanic_io_ops.write(&pv, 8, &panicked, 1); /* not the event register */
	assert_int_equal(calls, 2);
}

static void test_on_the_bus(void **state)
{
	(void)state;
	struct pci_bus bus;
	assert_true(pci_bus_init(&bus));
	struct pvpanic pv = { record, NULL };
	assert_true(pvpanic_attach(&pv, &bus));
	uint8_t id[4];
	pci_config_read(&bus, 1, 0, id, 4);
	assert_int_equal(id[0] | id[1] << 8, 0x1b36);
	assert_int_equal(id[2] | id[3] << 8, 0x0011);
	assert_int_not_equal(bus.slot[1]->bar[0].size, 0);
	pci_bus_destroy(&bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_byte),
		cmocka_unit_test(test_on_the_bus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for the power-control devices, with fake SCI and power
 * callbacks: ACPI PM1a (src/dev/pm.h: PM1_STS/PM1_EN at offsets 0/2,
 * PM1_CNT at 4, bit layouts of ACPI 6.4 section 4.8.3), the reset control
 * register 0xCF9 (src/dev/reset.h: bit 2 resets the CPU) and the i8042
 * reset line (src/dev/i8042.h: command 0xFE on the command port).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "dev/i8042.h"
#include "dev/pm.h"
#include "dev/reset.h"
#include "hv/layout.h"
#include "fakes.h"

#define PM1_STS 0
#define PM1_EN  2
#define PM1_CNT 4

#define PM1_PWRBTN     (1u << 8)  /* PWRBTN_STS / PWRBTN_EN */
#define CNT_SCI_EN     (1u << 0)
#define CNT_SLP_TYP(t) ((uint16_t)((t) << 10))
#define CNT_SLP_EN     (1u << 13)

struct pm_fixture {
	struct fake_irq sci;
	struct fake_power power;
	struct pm *pm;
};

static int pm_setup(void **state)
{
	struct pm_fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->pm = pm_create(fake_irq_line(&f->sci, IRQ_SCI), fake_power_sink(&f->power));
	*state = f;
	return f->pm ? 0 : -1;
}

static int pm_teardown(void **state)
{
	struct pm_fixture *f = *state;
	assert_int_equal(atomic_load(&f->sci.wrong_gsi), 0);
	assert_int_equal(atomic_load(&f->power.source_missing), 0);
	pm_destroy(f->pm);
	free(f);
	return 0;
}

static uint16_t rd16(struct pm *pm, unsigned off)
{
	uint8_t b[2] = { 0x5a, 0x5a };
	pm_io_ops.read(pm, off, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

static void wr16(struct pm *pm, unsigned off, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	pm_io_ops.write(pm, off, b, 2);
}

static void test_poweroff(void **state)
{
	struct pm_fixture *f = *state;
	/* ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN. */
	wr16(f->pm, PM1_CNT, CNT_SCI_EN | CNT_SLP_TYP(ACPI_SLP_TYP_S5));
	assert_int_equal(atomic_load(&f->power.off), 0);
	wr16(f->pm, PM1_CNT, CNT_SCI_EN | CNT_SLP_TYP(ACPI_SLP_TYP_S5) | CNT_SLP_EN);
	assert_int_equal(atomic_load(&f->power.off), 1);
	assert_int_equal(atomic_load(&f->power.reset), 0);
	/* SLP_EN is write-only: it reads 0. */
	assert_false(rd16(f->pm, PM1_CNT) & CNT_SLP_EN);
}

static void test_other_sleep_types(void **state)
{
	struct pm_fixture *f = *state;
	for (unsigned typ = 0; typ < 8; typ++) {
		if (typ == ACPI_SLP_TYP_S5)
			continue;
		wr16(f->pm, PM1_CNT, CNT_SCI_EN | CNT_SLP_TYP(typ) | CNT_SLP_EN);
	}
	assert_int_equal(atomic_load(&f->power.off), 0);
	assert_int_equal(atomic_load(&f->power.reset), 0);
	/* After all those, S5 still powers off. */
	wr16(f->pm, PM1_CNT, CNT_SCI_EN | CNT_SLP_TYP(ACPI_SLP_TYP_S5) | CNT_SLP_EN);
	assert_int_equal(atomic_load(&f->power.off), 1);
}

static void test_sci_en_reads_one(void **state)
{
	struct pm_fixture *f = *state;
	assert_true(rd16(f->pm, PM1_CNT) & CNT_SCI_EN);
	wr16(f->pm, PM1_CNT, 0); /* always in ACPI mode: cannot be turned off */
	assert_true(rd16(f->pm, PM1_CNT) & CNT_SCI_EN);
	uint8_t lo = 0;
	pm_io_ops.read(f->pm, PM1_CNT, &lo, 1);
	assert_true(lo & CNT_SCI_EN);
}

static void test_power_button(void **state)
{
	struct pm_fixture *f = *state;
	/* Disabled: status set, no SCI. */
	pm_press_power_button(f->pm);
	assert_true(rd16(f->pm, PM1_STS) & PM1_PWRBTN);
	assert_int_equal(atomic_load(&f->sci.level), 0);
	/* Enabling it with the status pending raises the SCI. */
	wr16(f->pm, PM1_EN, PM1_PWRBTN);
	assert_int_equal(rd16(f->pm, PM1_EN), PM1_PWRBTN);
	assert_int_equal(atomic_load(&f->sci.level), 1);
	/* Write 0: nothing cleared. */
	wr16(f->pm, PM1_STS, 0);
	assert_true(rd16(f->pm, PM1_STS) & PM1_PWRBTN);
	assert_int_equal(atomic_load(&f->sci.level), 1);
	/* Write 1 to clear. */
	wr16(f->pm, PM1_STS, PM1_PWRBTN);
	assert_false(rd16(f->pm, PM1_STS) & PM1_PWRBTN);
	assert_int_equal(atomic_load(&f->sci.level), 0);
	/* Enabled: a press raises the SCI at once. */
	unsigned raises = atomic_load(&f->sci.raises);
	pm_press_power_button(f->pm);
	assert_int_equal(atomic_load(&f->sci.level), 1);
	assert_int_equal(atomic_load(&f->sci.raises), raises + 1);
	/* Disabling it drops the SCI but keeps the status. */
	wr16(f->pm, PM1_EN, 0);
	assert_int_equal(atomic_load(&f->sci.level), 0);
	assert_true(rd16(f->pm, PM1_STS) & PM1_PWRBTN);
	/* Clearing with all ones works too; a button press never powers off by itself. */
	wr16(f->pm, PM1_STS, 0xffff);
	assert_false(rd16(f->pm, PM1_STS) & PM1_PWRBTN);
	assert_int_equal(atomic_load(&f->power.off), 0);
}

/* --- reset control register 0xCF9 --- */

static void reset_write(struct reset_ctl *r, uint8_t v)
{
	reset_io_ops.write(r, 0, &v, 1);
}

static void test_reset_register(void **state)
{
	(void)state;
	struct fake_power power;
	struct reset_ctl r = { .power = fake_power_sink(&power) };
	reset_write(&r, 0x02); /* system reset select only: no reset */
	reset_write(&r, 0x08);
	assert_int_equal(atomic_load(&power.reset), 0);
	reset_write(&r, RESET_VALUE); /* the FADT's value: 0x06 */
	assert_int_equal(atomic_load(&power.reset), 1);
	reset_write(&r, 0x04);
	assert_int_equal(atomic_load(&power.reset), 2);
	assert_int_equal(atomic_load(&power.off), 0);
	assert_int_equal(atomic_load(&power.source_missing), 0);
}

/* --- i8042 --- */

static void kbc_write(struct i8042 *k, unsigned off, uint8_t v)
{
	i8042_io_ops.write(k, off, &v, 1);
}

static void test_i8042(void **state)
{
	(void)state;
	struct fake_power power;
	struct i8042 k = { .power = fake_power_sink(&power) };
	enum { DATA = 0, CMD = PORT_I8042_CMD - PORT_I8042_DATA };
	assert_int_equal(CMD, 4);

	uint8_t status = 0xff;
	i8042_io_ops.read(&k, CMD, &status, 1);
	assert_int_equal(status & 0x03, 0); /* output and input buffers empty */
	assert_int_equal(status, 0);

	kbc_write(&k, DATA, 0xfe);  /* 0xFE on the data port is not the command */
	kbc_write(&k, CMD, 0xaa);   /* self-test */
	kbc_write(&k, CMD, 0xd1);   /* write output port */
	assert_int_equal(atomic_load(&power.reset), 0);
	kbc_write(&k, CMD, 0xfe);   /* pulse reset line */
	assert_int_equal(atomic_load(&power.reset), 1);
	assert_int_equal(atomic_load(&power.off), 0);
	assert_int_equal(atomic_load(&power.source_missing), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_poweroff, pm_setup, pm_teardown),
		cmocka_unit_test_setup_teardown(test_other_sleep_types, pm_setup, pm_teardown),
		cmocka_unit_test_setup_teardown(test_sci_en_reads_one, pm_setup, pm_teardown),
		cmocka_unit_test_setup_teardown(test_power_button, pm_setup, pm_teardown),
		cmocka_unit_test(test_reset_register),
		cmocka_unit_test(test_i8042),
	};
	return cmocka_run_group_tests_name("dev/pm, reset, i8042", tests, NULL, NULL);
}

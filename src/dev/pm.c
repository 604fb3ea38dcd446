/* ACPI PM1a event and control blocks (see pm.h). */
#include "dev/pm.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/log.h"
#include "hv/layout.h"

#define PM1_STS_PWRBTN  (1u << 8)
#define PM1_STS_WAK     (1u << 15)
#define PM1_EN_PWRBTN   (1u << 8)
#define PM1_CNT_SCI_EN  (1u << 0)
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_EN  (1u << 13)

#define OFF_STS 0
#define OFF_EN  2
#define OFF_CNT 4

struct pm {
	pthread_mutex_t lock;
	struct irq_line sci;
	struct power_sink power;
	uint16_t sts, en, cnt;
	int sci_level;
	bool warned_sleep;
};

static void pm_update_sci(struct pm *pm)
{
	int level = (pm->sts & pm->en & PM1_STS_PWRBTN) ? 1 : 0;
	if (level != pm->sci_level) {
		pm->sci_level = level;
		irq_line_set(&pm->sci, level);
	}
}

/* The three 16-bit registers, viewed as six bytes for any access width. */
static uint8_t pm_read_byte(struct pm *pm, unsigned off)
{
	uint16_t reg;
	switch (off & ~1u) {
	case OFF_STS: reg = pm->sts; break;
	case OFF_EN:  reg = pm->en; break;
	default:      reg = (uint16_t)((pm->cnt | PM1_CNT_SCI_EN) & ~PM1_CNT_SLP_EN); break;
	}
	return (uint8_t)(reg >> (8 * (off & 1)));
}

static void pm_write_cnt(struct pm *pm, uint16_t v)
{
	pm->cnt = v & (uint16_t)~PM1_CNT_SLP_EN;
	if (!(v & PM1_CNT_SLP_EN))
		return;
	unsigned slp_typ = (v >> PM1_CNT_SLP_TYP_SHIFT) & 7;
	if (slp_typ == ACPI_SLP_TYP_S5) {
		power_request(&pm->power, POWER_OFF, "ACPI S5");
	} else if (!pm->warned_sleep) {
		pm->warned_sleep = true;
		log_warn("guest asked for ACPI sleep type %u; only S5 (off) is supported", slp_typ);
	}
}

/* Applies a write of `len` bytes at `off` that lies inside one register. */
static void pm_write_reg(struct pm *pm, unsigned off, uint16_t v, uint16_t mask)
{
	switch (off & ~1u) {
	case OFF_STS:
		pm->sts &= (uint16_t)~(v & mask); /* write 1 to clear */
		break;
	case OFF_EN:
		pm->en = (uint16_t)((pm->en & ~mask) | (v & mask));
		break;
	default:
		pm_write_cnt(pm, (uint16_t)((pm->cnt & ~mask) | (v & mask)));
		break;
	}
}

static void pm_io_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	struct pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	for (unsigned i = 0; i < len; i++)
		data[i] = pm_read_byte(pm, (unsigned)offset + i);
	pthread_mutex_unlock(&pm->lock);
}

static void pm_io_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	/* Group bytes per 16-bit register so a word write to PM1_CNT is one write. */
	for (unsigned i = 0; i < len;) {
		unsigned off = (unsigned)offset + i;
		unsigned shift = 8 * (off & 1);
		uint16_t v = (uint16_t)(data[i] << shift);
		uint16_t mask = (uint16_t)(0xff << shift);
		if (!(off & 1) && i + 1 < len) {
			v |= (uint16_t)(data[i + 1] << 8);
			mask = 0xffff;
			i += 2;
		} else {
			i += 1;
		}
		pm_write_reg(pm, off, v, mask);
	}
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

const struct io_ops pm_io_ops = {
	.read = pm_io_read,
	.write = pm_io_write,
};

struct pm *pm_create(struct irq_line sci, struct power_sink power)
{
	struct pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return NULL;
	pthread_mutex_init(&pm->lock, NULL);
	pm->sci = sci;
	pm->power = power;
	pm->cnt = PM1_CNT_SCI_EN;
	return pm;
}

void pm_destroy(struct pm *pm)
{
	if (!pm)
		return;
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

void pm_press_power_button(struct pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_STS_PWRBTN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

/*
 * ACPI fixed hardware: the PM1a event block (status, enable) and control
 * block on consecutive ports, as the FADT describes them. Writing SLP_TYP=S5
 * with SLP_EN is the guest's poweroff. The power button is a fixed-feature
 * event: pm_press_power_button() sets PWRBTN_STS and raises the SCI, which
 * is how the host asks a guest to shut down cleanly.
 */
#ifndef SHOJI_DEV_PM_H
#define SHOJI_DEV_PM_H

#include "dev/dev.h"

#define PM_PORT_COUNT 6 /* PM1a_EVT (4) + PM1a_CNT (2) */

struct pm;

extern const struct io_ops pm_io_ops;

struct pm *pm_create(struct irq_line sci, struct power_sink power);
void pm_destroy(struct pm *pm);
void pm_press_power_button(struct pm *pm);

#endif

/*
 * The PC reset control register (port 0xCF9), which the FADT also names as
 * the ACPI reset register: writing a value with the CPU-reset bit asks the
 * machine to reboot.
 */
#ifndef SHOJI_DEV_RESET_H
#define SHOJI_DEV_RESET_H

#include "dev/dev.h"

struct reset_ctl {
	struct power_sink power;
	uint8_t value;
};

extern const struct io_ops reset_io_ops;

#endif

/*
 * Just enough of the i8042 keyboard controller for the oldest reboot path:
 * command 0xFE on port 0x64 pulses the CPU reset line. There is no keyboard
 * or mouse behind it (the FADT says so), and the status port always reads
 * "buffers empty" so a guest waiting to send its reset command never spins.
 */
#ifndef SHOJI_DEV_I8042_H
#define SHOJI_DEV_I8042_H

#include "dev/dev.h"

/* Registered on ports 0x60..0x64 (one range: data at 0, command at 4). */
#define I8042_PORT_COUNT 5

struct i8042 {
	struct power_sink power;
};

extern const struct io_ops i8042_io_ops;

#endif

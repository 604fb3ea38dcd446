/* i8042 reset line (see i8042.h). */
#include "dev/i8042.h"

#define I8042_CMD_OFFSET   4
#define I8042_CMD_RESET    0xfe

static void i8042_io_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	(void)dev;
	(void)offset;
	for (unsigned i = 0; i < len; i++)
		data[i] = 0; /* status: output and input buffers empty; data: nothing */
}

static void i8042_io_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct i8042 *kbc = dev;
	if (offset == I8042_CMD_OFFSET && len >= 1 && data[0] == I8042_CMD_RESET)
		power_request(&kbc->power, POWER_RESET, "i8042 reset command");
}

const struct io_ops i8042_io_ops = {
	.read = i8042_io_read,
	.write = i8042_io_write,
};

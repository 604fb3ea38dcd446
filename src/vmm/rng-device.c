/*
 * --rng: a virtio-rng device (dev/virtio-rng.c) fed from the host's
 * getrandom(). The smallest device kind (vmm/devices.h): a flag, one
 * device, nothing on the host side.
 */
#include "dev/virtio-rng.h"
#include "vmm/devices.h"
#include "vmm/exit.h"
#include "vmm/virtio-host.h"

static bool rng_parse(const char *value, unsigned index, void *out, char *err, size_t errlen)
{
	(void)value, (void)index, (void)err, (void)errlen;
	*(bool *)out = true;
	return true;
}

static int rng_create(const struct vmm_device_env *env, const void *opts, unsigned n, void **state)
{
	(void)opts, (void)n;
	struct virtio_rng *rng = virtio_rng_create();
	*state = rng;
	return rng && virtio_host_add(env->virtio, &virtio_rng_ops, rng) ? 0 : VMM_EXIT_FAILURE;
}

static void rng_destroy(void *state)
{
	virtio_rng_destroy(state);
}

const struct vmm_device_kind rng_device = {
	.option = "rng",
	.usage = "  --rng                 a virtio-rng device fed from the host's getrandom()\n",
	.parse = rng_parse,
	.create = rng_create,
	.destroy = rng_destroy,
};

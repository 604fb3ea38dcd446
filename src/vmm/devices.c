/*
 * The table of device kinds (see devices.h): built from VMM_DEVICES, with
 * where struct vmm_options keeps each kind's parsed values.
 */
#include "vmm/devices.h"

#include "base/errbuf.h"
#include "vmm/options.h"

#define VMM_DEVICE_SLOT(name, type, most)                                           \
	{ &name##_device, offsetof(struct vmm_options, name##s),                    \
	  offsetof(struct vmm_options, n##name##s), sizeof(type), most },

const struct vmm_device_slot vmm_devices[VMM_NDEVICES] = { VMM_DEVICES(VMM_DEVICE_SLOT) };

unsigned vmm_device_count(const struct vmm_device_slot *s, const struct vmm_options *o)
{
	return *(const unsigned *)((const char *)o + s->count);
}

const void *vmm_device_values(const struct vmm_device_slot *s, const struct vmm_options *o)
{
	return (const char *)o + s->values;
}

bool vmm_device_parse(const struct vmm_device_slot *s, const char *value, struct vmm_options *o,
		      char *err, size_t errlen)
{
	unsigned *n = (unsigned *)((char *)o + s->count);
	if (*n == s->most && s->most == 1)
		return errbuf_fail(err, errlen, "--%s given twice; give it once", s->kind->option);
	if (*n == s->most)
		return errbuf_fail(err, errlen, "--%s given more than %u times", s->kind->option, s->most);
	unsigned index = (*n)++;
	void *out = (char *)o + s->values + index * s->value_size;
	return s->kind->parse(value, index, out, err, errlen);
}

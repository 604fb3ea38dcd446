/* Implementation of daemon/jail-id.h: FNV-1a of the name, folded into the range. */
#include "daemon/jail-id.h"

uint32_t jail_id_of(const char *name)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return JAIL_ID_BASE + (h & (JAIL_ID_SPAN - 1));
}

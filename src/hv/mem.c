/*
 * Guest RAM layout and translation (see mem.h). RAM is split in two regions
 * at most: [0, min(size, hole)) and, for what does not fit below the MMIO
 * hole, [4 GiB, 4 GiB + rest).
 */
#include "hv/mem.h"

#include <string.h>
#include <sys/mman.h>

#include "base/log.h"
#include "base/util.h"
#include "hv/layout.h"

void guest_mem_plan(struct guest_mem *mem, uint64_t size)
{
	memset(mem, 0, sizeof(*mem));
	uint64_t low = size < LAYOUT_MMIO_HOLE_START ? size : LAYOUT_MMIO_HOLE_START;
	mem->regions[mem->count++] = (struct mem_region){ .gpa = 0, .size = low };
	if (size > low)
		mem->regions[mem->count++] =
			(struct mem_region){ .gpa = LAYOUT_4GIB, .size = size - low };
	mem->total = size;
}

bool guest_mem_alloc(struct guest_mem *mem, uint64_t size)
{
	guest_mem_plan(mem, size);
	for (unsigned i = 0; i < mem->count; i++) {
		struct mem_region *r = &mem->regions[i];
		/* NORESERVE: the guest rarely touches all of its RAM. */
		void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			log_error("cannot map %llu MiB of guest RAM: %m",
				  (unsigned long long)(r->size / MiB));
			guest_mem_free(mem);
			return false;
		}
		madvise(p, r->size, MADV_HUGEPAGE);
		/* Guest RAM has no place in a core dump of the VMM. */
		madvise(p, r->size, MADV_DONTDUMP);
		r->host = p;
	}
	return true;
}

void guest_mem_free(struct guest_mem *mem)
{
	for (unsigned i = 0; i < mem->count; i++) {
		if (mem->regions[i].host)
			munmap(mem->regions[i].host, mem->regions[i].size);
		mem->regions[i].host = NULL;
	}
	mem->count = 0;
}

void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->count; i++) {
		const struct mem_region *r = &mem->regions[i];
		if (gpa < r->gpa || !r->host)
			continue;
		if (range_within(gpa - r->gpa, len, r->size))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

bool guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = guest_mem_ptr(mem, gpa, len);
	if (!dst)
		return false;
	memcpy(dst, src, len);
	return true;
}

bool guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = guest_mem_ptr(mem, gpa, len);
	if (!src)
		return false;
	memcpy(dst, src, len);
	return true;
}

uint64_t guest_mem_low_end(const struct guest_mem *mem)
{
	return mem->count ? mem->regions[0].size : 0;
}

static unsigned e820_add(struct e820_entry_info *out, unsigned n, unsigned max,
			 uint64_t addr, uint64_t size, uint32_t type)
{
	if (n < max && size > 0)
		out[n++] = (struct e820_entry_info){ addr, size, type };
	return n;
}

unsigned guest_mem_e820(const struct guest_mem *mem, struct e820_entry_info *out, unsigned max)
{
	uint64_t low_end = guest_mem_low_end(mem);
	unsigned n = 0;

	n = e820_add(out, n, max, 0, LAYOUT_EBDA_ADDR, E820_RAM);
	n = e820_add(out, n, max, LAYOUT_EBDA_ADDR, LAYOUT_LOW_RAM_END - LAYOUT_EBDA_ADDR, E820_RESERVED);
	n = e820_add(out, n, max, LAYOUT_ACPI_ADDR, LAYOUT_ACPI_MAX, E820_RESERVED);
	if (low_end > LAYOUT_HIGH_MEM_START)
		n = e820_add(out, n, max, LAYOUT_HIGH_MEM_START, low_end - LAYOUT_HIGH_MEM_START, E820_RAM);
	/* Linux uses ECAM only where the firmware reserved it (and the MCFG names it). */
	n = e820_add(out, n, max, LAYOUT_PCI_ECAM_ADDR, LAYOUT_PCI_ECAM_SIZE, E820_RESERVED);
	for (unsigned i = 1; i < mem->count; i++)
		n = e820_add(out, n, max, mem->regions[i].gpa, mem->regions[i].size, E820_RAM);
	return n;
}

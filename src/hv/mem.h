/*
 * Guest RAM: anonymous host mappings registered with KVM as memory slots,
 * and the only way the rest of the VMM turns a guest-physical address into
 * a host pointer. Every translation checks the whole range [gpa, gpa+len)
 * against one region, so a guest-supplied address or length can never make
 * the VMM touch memory outside guest RAM (MMIO holes included).
 */
#ifndef SHOJI_HV_MEM_H
#define SHOJI_HV_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
};

struct guest_mem {
	struct mem_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned count;
	uint64_t total;
};

/* e820 entry types, as in the Linux boot protocol. */
enum e820_type {
	E820_RAM = 1,
	E820_RESERVED = 2,
	E820_ACPI = 3,
};

struct e820_entry_info {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/*
 * Lays out `size` bytes of RAM around the MMIO hole and maps it. Returns
 * false (after logging) when the host refuses the memory.
 */
bool guest_mem_alloc(struct guest_mem *mem, uint64_t size);
void guest_mem_free(struct guest_mem *mem);

/* Region layout only, no mapping: what guest_mem_alloc would produce. */
void guest_mem_plan(struct guest_mem *mem, uint64_t size);

/* Host pointer for [gpa, gpa+len), or NULL unless it lies in one region. */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copies in/out of guest RAM; false when the range is not all RAM. */
bool guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
bool guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);

/* End of the RAM region below the MMIO hole (exclusive). */
uint64_t guest_mem_low_end(const struct guest_mem *mem);

/*
 * The e820 map the guest sees for this memory. Returns the number of
 * entries written (at most max).
 */
unsigned guest_mem_e820(const struct guest_mem *mem, struct e820_entry_info *out, unsigned max);

#endif

/*
 * Loading an x86_64 Linux kernel per the Linux x86 boot protocol, entered
 * through its 64-bit entry point: no firmware, no real-mode setup code.
 *
 *  - a bzImage (boot protocol 2.12+, XLF_KERNEL_64): the protected-mode part
 *    goes to 1 MiB, the entry is 0x200 bytes into it;
 *  - an ELF64 executable (vmlinux, or a small test guest): PT_LOAD segments
 *    at their physical addresses, entry at e_entry.
 *
 * Parsing and planning are pure (no VM needed) so that a bad kernel file or
 * a machine too small for kernel + initrd is a usage error found before any
 * KVM resource is created.
 */
#ifndef SHOJI_HV_BOOT_H
#define SHOJI_HV_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/mem.h"

struct boot_params;

enum kernel_kind {
	KERNEL_BZIMAGE,
	KERNEL_ELF,
};

#define KERNEL_MAX_SEGMENTS 16

struct kernel_segment {
	uint64_t paddr;
	uint64_t offset;
	uint64_t filesz;
	uint64_t memsz;
};

struct kernel_info {
	enum kernel_kind kind;
	uint64_t entry;            /* guest-physical 64-bit entry point */
	uint64_t mem_end;          /* end of memory the kernel needs before reading e820 */
	uint64_t initrd_addr_max;  /* highest address an initrd byte may occupy */
	uint64_t cmdline_max;      /* longest command line, without the NUL */
	uint16_t protocol;         /* boot protocol version (bzImage) */
	unsigned nseg;
	struct kernel_segment seg[KERNEL_MAX_SEGMENTS];
};

struct boot_plan {
	uint64_t mem_size;
	uint64_t initrd_addr;
	uint64_t initrd_size;
	uint64_t cmdline_len;
};

/* Validates a kernel image; on failure `why` says what is wrong with it. */
bool kernel_parse(const uint8_t *img, size_t size, struct kernel_info *ki,
		  char *why, size_t whylen);

/* Places initrd and command line; fails when they do not fit in `mem_size`. */
bool boot_plan_make(const struct kernel_info *ki, uint64_t mem_size, uint64_t initrd_size,
		    size_t cmdline_len, struct boot_plan *plan, char *why, size_t whylen);

/* Fills the zero page handed to the kernel in RSI. */
void boot_params_build(struct boot_params *bp, const struct kernel_info *ki,
		       const uint8_t *img, size_t size, const struct boot_plan *plan,
		       uint64_t rsdp_addr, const struct e820_entry_info *e820, unsigned n_e820);

/*
 * Writes kernel, initrd, command line, zero page, GDT and identity page
 * tables (0-4 GiB) into guest memory.
 */
bool boot_load(const struct guest_mem *mem, const struct kernel_info *ki,
	       const uint8_t *img, size_t size, const uint8_t *initrd,
	       const struct boot_plan *plan, const char *cmdline, uint64_t rsdp_addr);

#endif

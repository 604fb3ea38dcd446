/*
 * A whole shoji machine: KVM VM, guest RAM loaded with kernel, initrd and
 * ACPI tables, the legacy devices on the port I/O bus, one thread per vCPU
 * and the console thread. machine_run() owns every resource it creates and
 * releases them on every path; it returns the process exit status
 * (vmm/exit.h).
 */
#ifndef SHOJI_VMM_MACHINE_H
#define SHOJI_VMM_MACHINE_H

#include <stddef.h>
#include <stdint.h>

#include "hv/boot.h"
#include "vmm/options.h"

/*
 * The kernel and initrd are mmap()ed images: machine_run() takes them over
 * and unmaps them as soon as they are copied into guest RAM, so that they
 * do not count against the VMM's own memory while the guest runs.
 */
struct machine_config {
	const struct vmm_options *opts;
	uint8_t *kernel;
	size_t kernel_size;
	const struct kernel_info *kernel_info;
	uint8_t *initrd;
	size_t initrd_size;
	const struct boot_plan *plan;
};

/* Signals the caller must block before calling machine_run(). */
void machine_block_signals(void);

int machine_run(const struct machine_config *cfg);

#endif

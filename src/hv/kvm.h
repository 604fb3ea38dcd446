/*
 * The KVM virtual machine: /dev/kvm, the VM file descriptor, its memory
 * slots, in-kernel interrupt controllers and PIT. Everything a VMM process
 * asks of KVM at VM scope goes through here; vCPU-scope calls are in vcpu.h.
 */
#ifndef SHOJI_HV_KVM_H
#define SHOJI_HV_KVM_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/mem.h"

struct kvm_cpuid2;

struct kvm_vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	unsigned max_vcpus;
	struct kvm_cpuid2 *supported_cpuid;
	bool hide_xsave; /* cpuid_host_loses_xsetbv(): decided once per VM */
	struct guest_mem mem;
};

/*
 * Opens /dev/kvm, checks the API version and the capabilities shoji needs,
 * creates the VM with its irqchip and PIT, and maps `mem_size` of RAM.
 * Logs one line and returns false on any failure (vm is then cleaned up).
 */
bool kvm_vm_create(struct kvm_vm *vm, uint64_t mem_size);
void kvm_vm_destroy(struct kvm_vm *vm);

/* Sets an interrupt line of the in-kernel PIC/IOAPIC (level 0 or 1). */
bool kvm_vm_set_irq_line(struct kvm_vm *vm, unsigned gsi, int level);

/* Whether KVM has capability `cap` (KVM_CAP_*) for this VM. */
bool kvm_vm_has_cap(const struct kvm_vm *vm, int cap);

/* Delivers one MSI (address/data as the guest programmed them). */
bool kvm_vm_signal_msi(struct kvm_vm *vm, uint64_t addr, uint32_t data);

/*
 * Makes guest writes of `len` bytes to MMIO address `gpa` signal `fd`
 * inside KVM, without an exit to the VMM (assign), or stops that.
 */
bool kvm_vm_ioeventfd(struct kvm_vm *vm, uint64_t gpa, unsigned len, int fd, bool assign);

/* The maximum number of vCPUs KVM allows for this VM. */
unsigned kvm_vm_max_vcpus(const struct kvm_vm *vm);

#endif

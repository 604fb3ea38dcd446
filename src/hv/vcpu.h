/*
 * One virtual CPU: its KVM file descriptor, the shared kvm_run page, and
 * the architectural state shoji gives it before it runs. The boot vCPU is
 * put straight into 64-bit mode at the kernel's entry; the others stay in
 * KVM's wait-for-SIPI state until the guest starts them through its LAPIC.
 */
#ifndef SHOJI_HV_VCPU_H
#define SHOJI_HV_VCPU_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/kvm.h"

struct kvm_run;

struct vcpu {
	unsigned index;
	int fd;
	struct kvm_run *run;
	int run_size;
};

/* Creates vCPU `index` of `count` with CPUID, MSRs, FPU and LAPIC set up. */
bool vcpu_create(struct vcpu *vcpu, struct kvm_vm *vm, unsigned index, unsigned count);
void vcpu_destroy(struct vcpu *vcpu);

/* Long mode, flat segments, identity paging; RIP=entry, RSI=zero page. */
bool vcpu_setup_boot(struct vcpu *vcpu, uint64_t entry);

/* KVM_RUN once; returns 0 or a negative errno (-EINTR when kicked). */
int vcpu_run(struct vcpu *vcpu);
/* KVM_KVMCLOCK_CTRL: the guest's kvmclock says the host stopped this vCPU
 * (no-op for a guest without kvmclock). */
void vcpu_tell_paused(struct vcpu *vcpu);

/*
 * True when the guest's IDT limit is 0: a triple fault in that state is the
 * deliberate "reset by triple fault" idiom (Linux reboot=triple and others),
 * not a crash.
 */
bool vcpu_idt_empty(struct vcpu *vcpu);

/*
 * True when the vCPU holds the reset vector's state (CS base 0xffff0000,
 * RIP 0xfff0, real mode). After a triple fault on AMD, KVM re-initialises
 * the vCPU (the VMCB is undefined after a shutdown intercept), so the
 * registers no longer say where the guest faulted, nor what its IDT was.
 */
bool vcpu_in_reset_state(struct vcpu *vcpu);

/* Guest RIP for diagnostics; 0 if it cannot be read. */
uint64_t vcpu_rip(struct vcpu *vcpu);

#endif

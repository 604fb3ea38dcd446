/*
 * The CPUID a vCPU sees: KVM_GET_SUPPORTED_CPUID (what KVM can virtualize)
 * fixed up for this machine: the hypervisor bit, per-vCPU APIC ids, a
 * topology of one socket with one core per vCPU, and features removed that
 * would need an opt-in shoji does not make (AMX tile state).
 */
#ifndef SHOJI_HV_CPUID_H
#define SHOJI_HV_CPUID_H

#include <stdbool.h>
#include <stdint.h>

struct kvm_cpuid2;
struct kvm_cpuid_entry2;

struct cpuid_topology {
	unsigned index;       /* this vCPU, also its APIC id */
	unsigned count;       /* vCPUs in the machine */
	bool tsc_deadline;    /* the in-kernel LAPIC has the TSC deadline timer */
	/* Hide XSAVE and all that needs it (AVX*, PKU, leaf 0xD): see cpuid_host_loses_xsetbv(). */
	bool hide_xsave;
};

/*
 * True when this process runs on QEMU's software CPU (hypervisor signature
 * "TCGTCGTCGTCG"), whose emulated SVM runs a guest's XSETBV without the exit
 * KVM asked for (QEMU 7.2, Debian 12's). KVM then keeps a stale XCR0 for the
 * guest and loads it on every entry: the guest kernel warns "XSAVE
 * consistency problem" and SMP guests crash now and then. Only the nested
 * test setup runs there; a guest without XSAVE never touches XCR0.
 */
bool cpuid_host_loses_xsetbv(void);

/* A fixed-up copy of `supported` for one vCPU; NULL on allocation failure. */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *supported,
				  const struct cpuid_topology *topo);

/* Applies the fix-ups in place. */
void cpuid_fixup(struct kvm_cpuid2 *cpuid, const struct cpuid_topology *topo);

/* Entry for (function, index), or NULL. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index);

#endif

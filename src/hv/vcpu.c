/*
 * vCPU creation and initial state (see vcpu.h). Values follow what a
 * firmware-less 64-bit Linux boot expects: flat 64-bit segments from our
 * GDT, paging on with the identity tables from boot.c, an MTRR default type
 * of write-back (Linux maps RAM uncached otherwise), and LAPIC LINT0/LINT1
 * wired as ExtINT/NMI as on a PC.
 */
#include "hv/vcpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "hv/cpuid.h"
#include "hv/layout.h"

#define MSR_IA32_SYSENTER_CS   0x174
#define MSR_IA32_SYSENTER_ESP  0x175
#define MSR_IA32_SYSENTER_EIP  0x176
#define MSR_IA32_MISC_ENABLE   0x1a0
#define MSR_MTRR_DEF_TYPE      0x2ff
#define MSR_STAR               0xc0000081
#define MSR_LSTAR              0xc0000082
#define MSR_CSTAR              0xc0000083
#define MSR_SYSCALL_MASK       0xc0000084
#define MSR_KERNEL_GS_BASE     0xc0000102

#define MISC_ENABLE_FAST_STRING 1ull
#define MTRR_ENABLE            (1ull << 11)
#define MTRR_TYPE_WB           6ull

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

#define BOOT_STACK_TOP 0x8ff0

static bool vcpu_set_cpuid(struct vcpu *vcpu, struct kvm_vm *vm, unsigned count)
{
	struct cpuid_topology topo = {
		.index = vcpu->index,
		.count = count,
		.tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0,
		.hide_xsave = vm->hide_xsave,
	};
	struct kvm_cpuid2 *cpuid = cpuid_for_vcpu(vm->supported_cpuid, &topo);
	if (!cpuid) {
		log_error("out of memory building CPUID for vCPU %u", vcpu->index);
		return false;
	}
	int rc = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid);
	free(cpuid);
	if (rc < 0) {
		log_error("KVM_SET_CPUID2 for vCPU %u failed: %m", vcpu->index);
		return false;
	}
	return true;
}

static bool vcpu_set_msrs(struct vcpu *vcpu)
{
	static const struct kvm_msr_entry defaults[] = {
		{ .index = MSR_IA32_SYSENTER_CS },
		{ .index = MSR_IA32_SYSENTER_ESP },
		{ .index = MSR_IA32_SYSENTER_EIP },
		{ .index = MSR_STAR },
		{ .index = MSR_LSTAR },
		{ .index = MSR_CSTAR },
		{ .index = MSR_SYSCALL_MASK },
		{ .index = MSR_KERNEL_GS_BASE },
		{ .index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING },
		{ .index = MSR_MTRR_DEF_TYPE, .data = MTRR_ENABLE | MTRR_TYPE_WB },
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[ARRAY_SIZE(defaults)];
	} msrs;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = ARRAY_SIZE(defaults);
	memcpy(msrs.entries, defaults, sizeof(defaults));

	int set = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
	if (set < 0 || (size_t)set != ARRAY_SIZE(defaults)) {
		/* KVM stops at the first MSR it refuses: name it. */
		log_error("KVM refused MSR 0x%x for vCPU %u", set >= 0 ? defaults[set].index : 0,
			  vcpu->index);
		return false;
	}
	return true;
}

static bool vcpu_set_fpu(struct vcpu *vcpu)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0) {
		log_error("KVM_SET_FPU for vCPU %u failed: %m", vcpu->index);
		return false;
	}
	return true;
}

static void lapic_set_lvt_mode(struct kvm_lapic_state *lapic, unsigned reg, uint32_t mode)
{
	uint32_t v;
	memcpy(&v, lapic->regs + reg, sizeof(v));
	v = (v & ~0x700u) | (mode << 8);
	memcpy(lapic->regs + reg, &v, sizeof(v));
}

static bool vcpu_set_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;
	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0) {
		log_error("KVM_GET_LAPIC for vCPU %u failed: %m", vcpu->index);
		return false;
	}
	lapic_set_lvt_mode(&lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
	lapic_set_lvt_mode(&lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0) {
		log_error("KVM_SET_LAPIC for vCPU %u failed: %m", vcpu->index);
		return false;
	}
	return true;
}

bool vcpu_create(struct vcpu *vcpu, struct kvm_vm *vm, unsigned index, unsigned count)
{
	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->index = index;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0) {
		log_error("KVM_CREATE_VCPU %u failed: %m", index);
		return false;
	}
	vcpu->run_size = vm->vcpu_mmap_size;
	vcpu->run = mmap(NULL, (size_t)vcpu->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		log_error("cannot map kvm_run of vCPU %u: %m", index);
		vcpu_destroy(vcpu);
		return false;
	}
	if (!vcpu_set_cpuid(vcpu, vm, count) || !vcpu_set_msrs(vcpu) ||
	    !vcpu_set_fpu(vcpu) || !vcpu_set_lapic(vcpu)) {
		vcpu_destroy(vcpu);
		return false;
	}
	return true;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->run_size);
	vcpu->run = NULL;
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->fd = -1;
}

static void flat_segment(struct kvm_segment *s, uint16_t selector, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = selector,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = 1,
		.l = code64 ? 1 : 0,
		.g = 1,
	};
}

bool vcpu_setup_boot(struct vcpu *vcpu, uint64_t entry)
{
	struct kvm_sregs sregs;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0) {
		log_error("KVM_GET_SREGS failed: %m");
		return false;
	}
	flat_segment(&sregs.cs, LAYOUT_BOOT_CS, 0xb, true);
	flat_segment(&sregs.ds, LAYOUT_BOOT_DS, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.base = 0, .limit = 0x67, .selector = 0x20, .type = 0xb, .present = 1,
	};
	sregs.gdt.base = LAYOUT_GDT_ADDR;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
	sregs.cr3 = LAYOUT_PML4_ADDR;
	sregs.cr4 = CR4_PAE;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0) {
		log_error("KVM_SET_SREGS failed: %m");
		return false;
	}

	struct kvm_regs regs = {
		.rip = entry,
		.rsi = LAYOUT_ZERO_PAGE_ADDR,
		.rsp = BOOT_STACK_TOP,
		.rflags = 0x2,
	};
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0) {
		log_error("KVM_SET_REGS failed: %m");
		return false;
	}
	return true;
}

int vcpu_run(struct vcpu *vcpu)
{
	if (ioctl(vcpu->fd, KVM_RUN, 0) < 0)
		return -errno;
	return 0;
}

void vcpu_tell_paused(struct vcpu *vcpu)
{
	/* EINVAL: the guest has not enabled kvmclock; nothing to tell. */
	(void)ioctl(vcpu->fd, KVM_KVMCLOCK_CTRL, 0);
}

uint64_t vcpu_rip(struct vcpu *vcpu)
{
	struct kvm_regs regs;
	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	return regs.rip;
}

bool vcpu_idt_empty(struct vcpu *vcpu)
{
	struct kvm_sregs sregs;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return false;
	return sregs.idt.limit == 0;
}

bool vcpu_in_reset_state(struct vcpu *vcpu)
{
	struct kvm_sregs sregs;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return false;
	return vcpu_rip(vcpu) == 0xfff0 && sregs.cs.base == 0xffff0000u && !(sregs.cr0 & 1);
}

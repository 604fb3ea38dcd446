/*
 * VM-scope KVM setup (see kvm.h). The order of calls matters to KVM: the
 * irqchip must exist before vCPUs are created, the PIT after the irqchip.
 */
#include "hv/kvm.h"
#include "hv/cpuid.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/log.h"
#include "base/ratelimit.h"
#include "hv/layout.h"

#define KVM_CPUID_MAX_ENTRIES 256

static bool kvm_check_caps(int kvm_fd)
{
	static const struct {
		int cap;
		const char *name;
	} required[] = {
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
		{ KVM_CAP_PIT2, "in-kernel PIT" },
		{ KVM_CAP_USER_MEMORY, "user memory slots" },
		{ KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
		{ KVM_CAP_SIGNAL_MSI, "MSI injection" },
		{ KVM_CAP_IOEVENTFD, "ioeventfd" },
	};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			log_error("/dev/kvm lacks %s (KVM capability %d); shoji needs a newer kernel",
				  required[i].name, required[i].cap);
			return false;
		}
	}
	return true;
}

static struct kvm_cpuid2 *kvm_get_supported_cpuid(int kvm_fd)
{
	size_t size = sizeof(struct kvm_cpuid2) +
		      KVM_CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, size);
	if (!c)
		return NULL;
	c->nent = KVM_CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		log_error("KVM_GET_SUPPORTED_CPUID failed: %m");
		free(c);
		return NULL;
	}
	return c;
}

static bool kvm_add_memory_slots(struct kvm_vm *vm)
{
	for (unsigned i = 0; i < vm->mem.count; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)r->host,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			log_error("KVM refused guest RAM slot %u (%llu MiB at 0x%llx): %m", i,
				  (unsigned long long)(r->size >> 20), (unsigned long long)r->gpa);
			return false;
		}
	}
	return true;
}

static bool kvm_create_irqchip_and_pit(struct kvm_vm *vm)
{
	/* Intel needs the TSS and identity map pages; AMD ignores them. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS_ADDR) < 0)
		log_debug("KVM_SET_TSS_ADDR: %m (ignored)");
	uint64_t idmap = LAYOUT_KVM_IDMAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		log_debug("KVM_SET_IDENTITY_MAP_ADDR: %m (ignored)");

	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP) < 0) {
		log_error("KVM_CREATE_IRQCHIP failed: %m");
		return false;
	}
	/* The dummy speaker port (0x61) keeps that legacy port in the kernel. */
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("KVM_CREATE_PIT2 failed: %m");
		return false;
	}
	return true;
}

static bool kvm_open(struct kvm_vm *vm)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		log_error("cannot open /dev/kvm: %m (is KVM enabled and are you in the kvm group?)");
		return false;
	}
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		log_error("/dev/kvm speaks API version %d, shoji needs %d", version, KVM_API_VERSION);
		return false;
	}
	if (!kvm_check_caps(vm->kvm_fd))
		return false;
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		log_error("KVM_GET_VCPU_MMAP_SIZE failed: %m");
		return false;
	}
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	vm->max_vcpus = max > 0 ? (unsigned)max : 1;
	vm->supported_cpuid = kvm_get_supported_cpuid(vm->kvm_fd);
	vm->hide_xsave = cpuid_host_loses_xsetbv();
	if (vm->hide_xsave)
		log_info("running on QEMU's emulated CPU, whose SVM hides a guest's XSETBV from KVM: "
			 "XSAVE, AVX and PKU are not offered to the guest");
	return vm->supported_cpuid != NULL;
}

bool kvm_vm_create(struct kvm_vm *vm, uint64_t mem_size)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	if (!kvm_open(vm))
		goto fail;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		log_error("KVM_CREATE_VM failed: %m");
		goto fail;
	}
	if (!kvm_create_irqchip_and_pit(vm))
		goto fail;
	if (!guest_mem_alloc(&vm->mem, mem_size))
		goto fail;
	if (!kvm_add_memory_slots(vm))
		goto fail;
	return true;
fail:
	kvm_vm_destroy(vm);
	return false;
}

void kvm_vm_destroy(struct kvm_vm *vm)
{
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	guest_mem_free(&vm->mem);
	free(vm->supported_cpuid);
	vm->supported_cpuid = NULL;
}

/*
 * The guest drives the calls below (its interrupts, its MSI addresses, its
 * device starts), so their failures are logged through a limit. A VMM
 * runs one VM: these are per-VM limits.
 */
static struct ratelimit irq_line_limit = RATELIMIT_GUEST;
static struct ratelimit msi_limit = RATELIMIT_GUEST;
static struct ratelimit ioeventfd_limit = RATELIMIT_GUEST;

bool kvm_vm_set_irq_line(struct kvm_vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0) {
		log_limited(&irq_line_limit, LOG_LEVEL_WARN, "KVM_IRQ_LINE gsi %u level %d failed: %m",
			    gsi, level);
		return false;
	}
	return true;
}

bool kvm_vm_has_cap(const struct kvm_vm *vm, int cap)
{
	return ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap) > 0;
}

bool kvm_vm_signal_msi(struct kvm_vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};
	/* 0 means the guest masked it at the LAPIC; only an error is worth a line. */
	if (ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0) {
		log_limited(&msi_limit, LOG_LEVEL_DEBUG, "KVM_SIGNAL_MSI to 0x%llx failed: %m",
			    (unsigned long long)addr);
		return false;
	}
	return true;
}

bool kvm_vm_ioeventfd(struct kvm_vm *vm, uint64_t gpa, unsigned len, int fd, bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = gpa,
		.len = len,
		.fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
		log_limited(&ioeventfd_limit, LOG_LEVEL_WARN, "KVM_IOEVENTFD at 0x%llx (%s) failed: %m",
			    (unsigned long long)gpa, assign ? "assign" : "deassign");
		return false;
	}
	return true;
}

unsigned kvm_vm_max_vcpus(const struct kvm_vm *vm)
{
	return vm->max_vcpus;
}

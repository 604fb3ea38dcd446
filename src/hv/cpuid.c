/*
 * CPUID fix-ups (see cpuid.h). Topology: one package, `count` cores, one
 * thread per core, APIC id == vCPU index. Leaves are rewritten in place;
 * leaves KVM does not report are not invented.
 */
#include "hv/cpuid.h"

#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_HYPERVISOR   (1u << 31)
#define CPUID_1_EDX_HTT          (1u << 28)
#define CPUID_7_EDX_AMX_BF16     (1u << 22)
#define CPUID_7_EDX_AMX_TILE     (1u << 24)
#define CPUID_7_EDX_AMX_INT8     (1u << 25)
#define XSTATE_AMX_MASK          ((1u << 17) | (1u << 18))

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		if (e->function != function)
			continue;
		if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index)
			return e;
	}
	return NULL;
}

/* Number of bits needed to hold values 0 .. n-1. */
static unsigned bits_for(unsigned n)
{
	unsigned bits = 0;
	while ((1u << bits) < n)
		bits++;
	return bits;
}

static void fixup_leaf1(struct kvm_cpuid_entry2 *e, const struct cpuid_topology *t)
{
	e->ebx &= 0x0000ffffu;
	e->ebx |= (t->index & 0xffu) << 24;
	e->ebx |= (t->count & 0xffu) << 16;
	if (t->count > 1)
		e->edx |= CPUID_1_EDX_HTT;
	else
		e->edx &= ~CPUID_1_EDX_HTT;
	e->ecx |= CPUID_1_ECX_HYPERVISOR;
	if (t->tsc_deadline)
		e->ecx |= CPUID_1_ECX_TSC_DEADLINE;
	else
		e->ecx &= ~CPUID_1_ECX_TSC_DEADLINE;
}

/* Deterministic cache parameters: who shares each cache level. */
static void fixup_leaf4(struct kvm_cpuid_entry2 *e, const struct cpuid_topology *t)
{
	unsigned level = (e->eax >> 5) & 7;
	uint32_t sharing = level >= 3 ? (t->count - 1 > 0xfff ? 0xfff : t->count - 1) : 0;
	e->eax &= 0x00003fffu;
	e->eax |= (sharing & 0xfffu) << 14;
	/* A 6-bit field: more than 64 cores saturates rather than wraps. */
	uint32_t cores = t->count - 1 > 0x3f ? 0x3f : t->count - 1;
	e->eax |= cores << 26;
}

/* Extended topology (0xB and 0x1F): SMT level then core level. */
static void fixup_topology_leaf(struct kvm_cpuid_entry2 *e, const struct cpuid_topology *t)
{
	e->edx = t->index;
	switch (e->index) {
	case 0: /* SMT: one thread per core */
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (1u << 8) | 0;
		break;
	case 1: /* cores in the package */
		e->eax = bits_for(t->count);
		e->ebx = t->count;
		e->ecx = (2u << 8) | 1;
		break;
	default:
		e->eax = 0;
		e->ebx = 0;
		e->ecx = e->index & 0xffu;
		break;
	}
}

/* Structured extended features: drop AMX, which needs an XFD opt-in. */
static void fixup_leaf7(struct kvm_cpuid_entry2 *e)
{
	if (e->index == 0)
		e->edx &= ~(CPUID_7_EDX_AMX_BF16 | CPUID_7_EDX_AMX_TILE | CPUID_7_EDX_AMX_INT8);
}

static void fixup_leafd(struct kvm_cpuid_entry2 *e)
{
	if (e->index == 0)
		e->eax &= ~XSTATE_AMX_MASK;
	else if (e->index == 17 || e->index == 18)
		e->eax = e->ebx = e->ecx = e->edx = 0;
}

/* AMD: core count and extended APIC id. */
static void fixup_amd_leaves(struct kvm_cpuid_entry2 *e, const struct cpuid_topology *t)
{
	if (e->function == 0x80000008) {
		e->ecx &= ~0xf0ffu;
		e->ecx |= (t->count - 1) & 0xffu;
		e->ecx |= (bits_for(t->count) & 0xfu) << 12;
	} else if (e->function == 0x8000001e) {
		e->eax = t->index;
		e->ebx = t->index & 0xffu; /* compute unit id; one thread per unit */
		e->ecx = 0;                /* node 0 */
	}
}

/* Leaf 1 ECX: FMA, XSAVE, OSXSAVE, AVX, F16C. */
#define CPUID_1_ECX_XSAVE_USERS  ((1u << 12) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 29))
/* Leaf 7.0 EBX: AVX2 and the AVX-512 family. */
#define CPUID_7_EBX_AVX          ((1u << 5) | (1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | \
				  (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
/* Leaf 7.0 ECX: AVX512_VBMI, PKU, OSPKE, VBMI2, VAES, VPCLMULQDQ, VNNI, BITALG, VPOPCNTDQ. */
#define CPUID_7_ECX_AVX_PKU      ((1u << 1) | (1u << 3) | (1u << 4) | (1u << 6) | (1u << 9) | \
				  (1u << 10) | (1u << 11) | (1u << 12) | (1u << 14))
/* Leaf 7.0 EDX: AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, FP16. */
#define CPUID_7_EDX_AVX          ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23))
/* Leaf 7.1 EAX: AVX_VNNI, AVX512_BF16. */
#define CPUID_7_1_EAX_AVX        ((1u << 4) | (1u << 5))
/* Leaf 0x80000001 ECX: XOP, FMA4. */
#define CPUID_80000001_ECX_AVX   ((1u << 11) | (1u << 16))

static void hide_xsave(struct kvm_cpuid_entry2 *e)
{
	if (e->function == 0x1) {
		e->ecx &= ~CPUID_1_ECX_XSAVE_USERS;
	} else if (e->function == 0x7 && e->index == 0) {
		e->ebx &= ~CPUID_7_EBX_AVX;
		e->ecx &= ~CPUID_7_ECX_AVX_PKU;
		e->edx &= ~CPUID_7_EDX_AVX;
	} else if (e->function == 0x7 && e->index == 1) {
		e->eax &= ~CPUID_7_1_EAX_AVX;
	} else if (e->function == 0xd) {
		e->eax = e->ebx = e->ecx = e->edx = 0;
	} else if (e->function == 0x80000001) {
		e->ecx &= ~CPUID_80000001_ECX_AVX;
	}
}

/* The CPUID of the CPU this process runs on (<cpuid.h> is shadowed by ours). */
static void host_cpuid(uint32_t leaf, uint32_t *eax, uint32_t *ebx, uint32_t *ecx, uint32_t *edx)
{
	__asm__ volatile("cpuid" : "=a"(*eax), "=b"(*ebx), "=c"(*ecx), "=d"(*edx) : "a"(leaf), "c"(0));
}

bool cpuid_host_loses_xsetbv(void)
{
	uint32_t eax, ebx, ecx, edx;
	host_cpuid(1, &eax, &ebx, &ecx, &edx);
	if (!(ecx & (1u << 31))) /* no hypervisor under us */
		return false;
	host_cpuid(0x40000000, &eax, &ebx, &ecx, &edx);
	char sig[13] = { 0 };
	memcpy(sig, &ebx, 4);
	memcpy(sig + 4, &ecx, 4);
	memcpy(sig + 8, &edx, 4);
	return strcmp(sig, "TCGTCGTCGTCG") == 0;
}

void cpuid_fixup(struct kvm_cpuid2 *cpuid, const struct cpuid_topology *topo)
{
	for (uint32_t i = 0; topo->hide_xsave && i < cpuid->nent; i++)
		hide_xsave(&cpuid->entries[i]);
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		switch (e->function) {
		case 0x1:
			fixup_leaf1(e, topo);
			break;
		case 0x4:
			fixup_leaf4(e, topo);
			break;
		case 0x7:
			fixup_leaf7(e);
			break;
		case 0xb:
		case 0x1f:
			fixup_topology_leaf(e, topo);
			break;
		case 0xd:
			fixup_leafd(e);
			break;
		case 0x1d: /* AMX tile information */
		case 0x1e:
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0x80000008:
		case 0x8000001e:
			fixup_amd_leaves(e, topo);
			break;
		default:
			break;
		}
	}
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *supported,
				  const struct cpuid_topology *topo)
{
	size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *copy = malloc(size);
	if (!copy)
		return NULL;
	memcpy(copy, supported, size);
	cpuid_fixup(copy, topo);
	return copy;
}

/*
 * Unit tests for the CPUID fix-ups (src/hv/cpuid.h) on a synthetic
 * KVM_GET_SUPPORTED_CPUID result shaped like a real host's (an 8-core,
 * 16-thread part with AMX). The machine promises: the hypervisor bit, APIC
 * id == vCPU index in leaf 1 and in the x2APIC id of leaf 0xB, a topology
 * of one package with one single-threaded core per vCPU (leaves 1, 4, 0xB
 * and the AMD 0x80000008/0x8000001E), AMX removed (leaf 7 and the XSAVE
 * components of leaf 0xD), the TSC-deadline bit exactly when the in-kernel
 * LAPIC has the timer, KVM's own leaves untouched, and the input untouched.
 * Field layouts are from the Intel SDM vol. 2 and the AMD APM vol. 3.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <linux/kvm.h>

#include "base/util.h"
#include "hv/cpuid.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX

#define L1_ECX_TSC_DEADLINE (1u << 24)
#define L1_ECX_HYPERVISOR   (1u << 31)
#define L1_EDX_HTT          (1u << 28)
#define L7_EDX_AMX_BF16     (1u << 22)
#define L7_EDX_AMX_TILE     (1u << 24)
#define L7_EDX_AMX_INT8     (1u << 25)
#define L7_EDX_AMX (L7_EDX_AMX_BF16 | L7_EDX_AMX_TILE | L7_EDX_AMX_INT8)
#define XCR0_AMX            ((1u << 17) | (1u << 18))  /* XTILECFG, XTILEDATA */

#define LEVEL_TYPE_INVALID 0
#define LEVEL_TYPE_SMT     1
#define LEVEL_TYPE_CORE    2

/* Host-like values; garbage where the fix-ups must overwrite. */
static const struct kvm_cpuid_entry2 host_leaves[] = {
	{ .function = 0x0, .eax = 0x1f, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69 },
	{ .function = 0x1, .eax = 0x000806f8, .ebx = 0x5a100800,
	  .ecx = 0x7ffefbff & ~L1_ECX_HYPERVISOR & ~L1_ECX_TSC_DEADLINE, .edx = 0xbfebfbff },
	{ .function = 0x4, .index = 0, .flags = SIG, .eax = 0xfc004121, .ebx = 0x02c0003f, .ecx = 0x3f },
	{ .function = 0x4, .index = 1, .flags = SIG, .eax = 0xfc004122, .ebx = 0x01c0003f, .ecx = 0x3f },
	{ .function = 0x4, .index = 2, .flags = SIG, .eax = 0xfc01c143, .ebx = 0x03c0003f, .ecx = 0x7ff },
	{ .function = 0x4, .index = 3, .flags = SIG, .eax = 0xfc3fc163, .ebx = 0x03c0003f, .ecx = 0xbfff },
	{ .function = 0x4, .index = 4, .flags = SIG, .eax = 0, .ebx = 0, .ecx = 0 },
	{ .function = 0x7, .index = 0, .flags = SIG, .eax = 1, .ebx = 0xf3bfbfbf, .ecx = 0x1b415f6e,
	  .edx = 0xbfc3c410 | L7_EDX_AMX },
	{ .function = 0x7, .index = 1, .flags = SIG, .eax = 0x00201c30 },
	{ .function = 0xb, .index = 0, .flags = SIG, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 0x3d },
	{ .function = 0xb, .index = 1, .flags = SIG, .eax = 7, .ebx = 112, .ecx = 0x201, .edx = 0x3d },
	{ .function = 0xb, .index = 2, .flags = SIG, .eax = 0, .ebx = 0, .ecx = 2, .edx = 0x3d },
	{ .function = 0xd, .index = 0, .flags = SIG, .eax = 0x000602e7, .ebx = 0x2b00, .ecx = 0x2b00 },
	{ .function = 0xd, .index = 1, .flags = SIG, .eax = 0x1f },
	{ .function = 0xd, .index = 17, .flags = SIG, .eax = 0x40, .ebx = 0xac0, .ecx = 2 },
	{ .function = 0xd, .index = 18, .flags = SIG, .eax = 0x2000, .ebx = 0xb00, .ecx = 6 },
	{ .function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b, .ecx = 0x564b4d56,
	  .edx = 0x0000004d },
	{ .function = 0x40000001, .eax = 0x01007afb },
	{ .function = 0x80000000, .eax = 0x80000021 },
	{ .function = 0x80000008, .eax = 0x00003030, .ebx = 0x0101d205, .ecx = 0x0000a07f },
	{ .function = 0x8000001e, .eax = 0x5a, .ebx = 0x0000013c, .ecx = 0x00000305 },
};

static struct kvm_cpuid2 *host_cpuid(void)
{
	size_t n = ARRAY_SIZE(host_leaves);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	assert_non_null(c);
	c->nent = (uint32_t)n;
	memcpy(c->entries, host_leaves, sizeof(host_leaves));
	return c;
}

static const struct kvm_cpuid_entry2 *host_leaf(uint32_t fn, uint32_t index)
{
	for (size_t i = 0; i < ARRAY_SIZE(host_leaves); i++)
		if (host_leaves[i].function == fn && host_leaves[i].index == index)
			return &host_leaves[i];
	fail_msg("test bug: no host leaf 0x%x.%u", fn, index);
	return NULL;
}

/* The fixed-up CPUID of vCPU `index` of `count`. */
static struct kvm_cpuid2 *vcpu_cpuid(unsigned index, unsigned count, bool tsc_deadline)
{
	struct kvm_cpuid2 *in = host_cpuid();
	struct cpuid_topology topo = { .index = index, .count = count, .tsc_deadline = tsc_deadline };
	struct kvm_cpuid2 *out = cpuid_for_vcpu(in, &topo);
	assert_non_null(out);
	free(in);
	assert_int_equal(out->nent, ARRAY_SIZE(host_leaves)); /* nothing invented or lost */
	return out;
}

static const struct kvm_cpuid_entry2 *leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t index)
{
	const struct kvm_cpuid_entry2 *e = cpuid_find(c, fn, index);
	if (!e)
		fail_msg("leaf 0x%x.%u missing after the fix-ups", fn, index);
	return e;
}

static unsigned pow2_ceil(unsigned v)
{
	unsigned p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

/* x2APIC id shift to the package level for `count` single-threaded cores. */
static const struct {
	unsigned count, core_shift;
} topologies[] = { { 1, 0 }, { 2, 1 }, { 3, 2 }, { 4, 2 }, { 5, 3 }, { 32, 5 }, { 33, 6 } };

static void check_leaf1(unsigned index, unsigned count)
{
	struct kvm_cpuid2 *c = vcpu_cpuid(index, count, false);
	const struct kvm_cpuid_entry2 *e = leaf(c, 0x1, 0), *h = host_leaf(0x1, 0);
	assert_int_equal(e->ebx >> 24, index);                    /* initial APIC id */
	unsigned logical = (e->ebx >> 16) & 0xff;                 /* addressable logical ids */
	if (logical < count || pow2_ceil(logical) != pow2_ceil(count))
		fail_msg("vCPU %u/%u: leaf 1 EBX[23:16] = %u", index, count, logical);
	assert_int_equal(e->ebx & 0xffff, h->ebx & 0xffff);      /* CLFLUSH size, brand */
	assert_true(e->ecx & L1_ECX_HYPERVISOR);
	assert_int_equal(e->ecx & ~(L1_ECX_HYPERVISOR | L1_ECX_TSC_DEADLINE), h->ecx);
	assert_int_equal(e->eax, h->eax);
	if (count > 1)
		assert_true(e->edx & L1_EDX_HTT);
	else
		assert_false(e->edx & L1_EDX_HTT);
	assert_int_equal(e->edx & ~L1_EDX_HTT, h->edx & ~L1_EDX_HTT);
	free(c);
}

static void test_leaf1(void **state)
{
	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(topologies); t++)
		for (unsigned i = 0; i < topologies[t].count; i++)
			check_leaf1(i, topologies[t].count);
}

static void test_tsc_deadline(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = vcpu_cpuid(0, 2, true);
	assert_true(leaf(c, 0x1, 0)->ecx & L1_ECX_TSC_DEADLINE);
	free(c);
	c = vcpu_cpuid(1, 2, false);
	assert_false(leaf(c, 0x1, 0)->ecx & L1_ECX_TSC_DEADLINE);
	free(c);

	/* Cleared even when the input claims it. */
	struct kvm_cpuid2 *in = host_cpuid();
	cpuid_find(in, 0x1, 0)->ecx |= L1_ECX_TSC_DEADLINE;
	struct cpuid_topology topo = { .index = 0, .count = 1, .tsc_deadline = false };
	cpuid_fixup(in, &topo);
	assert_false(cpuid_find(in, 0x1, 0)->ecx & L1_ECX_TSC_DEADLINE);
	free(in);
}

/* HTT follows the vCPU count whatever the host says. */
static void test_htt(void **state)
{
	(void)state;
	struct kvm_cpuid2 *in = host_cpuid();
	cpuid_find(in, 0x1, 0)->edx &= ~L1_EDX_HTT;
	struct cpuid_topology topo = { .index = 1, .count = 2 };
	cpuid_fixup(in, &topo);
	assert_true(cpuid_find(in, 0x1, 0)->edx & L1_EDX_HTT);
	topo = (struct cpuid_topology){ .index = 0, .count = 1 };
	cpuid_fixup(in, &topo);
	assert_false(cpuid_find(in, 0x1, 0)->edx & L1_EDX_HTT);
	free(in);
}

static void check_leafb(unsigned index, unsigned count, unsigned core_shift)
{
	struct kvm_cpuid2 *c = vcpu_cpuid(index, count, false);
	const struct kvm_cpuid_entry2 *smt = leaf(c, 0xb, 0), *core = leaf(c, 0xb, 1),
				      *end = leaf(c, 0xb, 2);
	/* Every level reports the x2APIC id. */
	assert_int_equal(smt->edx, index);
	assert_int_equal(core->edx, index);
	assert_int_equal(end->edx, index);

	/* Level 0: SMT, one thread per core. */
	assert_int_equal((smt->ecx >> 8) & 0xff, LEVEL_TYPE_SMT);
	assert_int_equal(smt->ecx & 0xff, 0);
	assert_int_equal(smt->eax & 0x1f, 0);
	assert_int_equal(smt->ebx & 0xffff, 1);
	/* Level 1: cores of the one package. */
	assert_int_equal((core->ecx >> 8) & 0xff, LEVEL_TYPE_CORE);
	assert_int_equal(core->ecx & 0xff, 1);
	if ((core->eax & 0x1f) != core_shift)
		fail_msg("%u vCPUs: core-level shift %u, want %u", count, core->eax & 0x1f, core_shift);
	assert_int_equal(core->ebx & 0xffff, count);
	/* Level 2: invalid, ends the enumeration. */
	assert_int_equal((end->ecx >> 8) & 0xff, LEVEL_TYPE_INVALID);
	assert_int_equal(end->ecx & 0xff, 2);
	assert_int_equal(end->ebx & 0xffff, 0);
	/* Every vCPU is in package 0 and has its own core id. */
	assert_int_equal(index >> (core->eax & 0x1f), 0);
	assert_int_equal(index >> (smt->eax & 0x1f), index);
	free(c);
}

static void test_leafb(void **state)
{
	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(topologies); t++)
		for (unsigned i = 0; i < topologies[t].count; i++)
			check_leafb(i, topologies[t].count, topologies[t].core_shift);
}

static void test_leaf4(void **state)
{
	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(topologies); t++) {
		unsigned count = topologies[t].count;
		struct kvm_cpuid2 *c = vcpu_cpuid(count - 1, count, false);
		for (uint32_t sub = 0; sub < 4; sub++) {
			const struct kvm_cpuid_entry2 *e = leaf(c, 0x4, sub), *h = host_leaf(0x4, sub);
			unsigned level = (e->eax >> 5) & 7;
			assert_int_equal(e->eax & 0x3fff, h->eax & 0x3fff);   /* type, level, flags */
			assert_int_equal(e->ebx, h->ebx);                    /* geometry */
			assert_int_equal(e->ecx, h->ecx);
			unsigned cores = (e->eax >> 26) + 1;
			if (cores < count || pow2_ceil(cores) != pow2_ceil(count))
				fail_msg("%u vCPUs: leaf 4.%u cores per package %u", count, sub, cores);
			unsigned sharing = ((e->eax >> 14) & 0xfff) + 1;
			if (level < 3) {
				/* L1 and L2 belong to one single-threaded core. */
				if (sharing != 1)
					fail_msg("%u vCPUs: L%u shared by %u", count, level, sharing);
			} else if (sharing < count || pow2_ceil(sharing) != pow2_ceil(count)) {
				fail_msg("%u vCPUs: L3 shared by %u", count, sharing);
			}
		}
		/* The terminating null subleaf stays null. */
		assert_int_equal(leaf(c, 0x4, 4)->eax & 0x1f, 0);
		free(c);
	}
}

/*
 * Leaf 4 EAX[31:26] is six bits: past 64 cores it must saturate at 63, not
 * wrap (65 vCPUs would otherwise claim one core per package). --cpus and
 * the MADT allow up to 254.
 * Regression test (bug found by this test, fixed): fixup_leaf4 in src/hv/cpuid.c
 * stores (count - 1) & 0x3f.
 */
static void test_leaf4_many_cpus(void **state)
{
	(void)state;
	static const unsigned counts[] = { 63, 64, 65, 100, 128, 254 };
	for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
		unsigned count = counts[i], want = count < 64 ? count : 64;
		struct kvm_cpuid2 *c = vcpu_cpuid(0, count, false);
		uint32_t eax[4];
		for (uint32_t sub = 0; sub < 4; sub++)
			eax[sub] = leaf(c, 0x4, sub)->eax;
		free(c);
		for (uint32_t sub = 0; sub < 4; sub++) {
			unsigned cores = (eax[sub] >> 26) + 1;
			unsigned level = (eax[sub] >> 5) & 7;
			unsigned sharing = ((eax[sub] >> 14) & 0xfff) + 1;
			if (cores < want)
				fail_msg("%u vCPUs: leaf 4.%u says %u cores per package", count, sub,
					 cores);
			if (level >= 3 && sharing < count)
				fail_msg("%u vCPUs: L3 shared by %u", count, sharing);
		}
	}
}

static void test_amx_removed(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = vcpu_cpuid(0, 4, true);
	const struct kvm_cpuid_entry2 *l7 = leaf(c, 0x7, 0);
	assert_int_equal(l7->edx & L7_EDX_AMX, 0);
	assert_int_equal(l7->edx, host_leaf(0x7, 0)->edx & ~L7_EDX_AMX);
	assert_int_equal(l7->ebx, host_leaf(0x7, 0)->ebx);
	assert_int_equal(l7->ecx, host_leaf(0x7, 0)->ecx);

	const struct kvm_cpuid_entry2 *d0 = leaf(c, 0xd, 0);
	assert_int_equal(d0->eax & XCR0_AMX, 0);
	assert_int_equal(d0->eax, host_leaf(0xd, 0)->eax & ~XCR0_AMX); /* x87, SSE, AVX... kept */
	for (uint32_t sub = 17; sub <= 18; sub++) {
		const struct kvm_cpuid_entry2 *e = leaf(c, 0xd, sub);
		assert_int_equal(e->eax | e->ebx | e->ecx | e->edx, 0);
	}
	assert_int_equal(leaf(c, 0xd, 1)->eax, host_leaf(0xd, 1)->eax);
	free(c);
}

/* On QEMU's emulated CPU: no XSAVE, nothing that needs XCR0, no leaf 0xD; the rest as usual. */
static void test_hide_xsave(void **state)
{
	(void)state;
	struct kvm_cpuid2 *in = host_cpuid();
	struct cpuid_topology topo = { .index = 1, .count = 2, .hide_xsave = true };
	struct kvm_cpuid2 *c = cpuid_for_vcpu(in, &topo);
	assert_non_null(c);
	const struct kvm_cpuid_entry2 *l1 = leaf(c, 0x1, 0);
	const uint32_t xsave = 1u << 26, osxsave = 1u << 27, avx = 1u << 28, fma = 1u << 12;
	assert_true(host_leaf(0x1, 0)->ecx & (xsave | avx | fma)); /* the host has them */
	assert_int_equal(l1->ecx & (xsave | osxsave | avx | fma), 0);
	assert_true(l1->ecx & L1_ECX_HYPERVISOR);                  /* other fix-ups still apply */
	assert_int_equal(l1->ebx >> 24, 1);                         /* APIC id */
	const struct kvm_cpuid_entry2 *l7 = leaf(c, 0x7, 0);
	assert_int_equal(l7->ebx & ((1u << 5) | (1u << 16)), 0);   /* AVX2, AVX512F */
	assert_int_equal(l7->ecx & ((1u << 3) | (1u << 4)), 0);    /* PKU, OSPKE */
	assert_int_equal(l7->ebx & 1u, host_leaf(0x7, 0)->ebx & 1u); /* FSGSBASE kept */
	for (uint32_t sub = 0; sub <= 1; sub++) {
		const struct kvm_cpuid_entry2 *d = leaf(c, 0xd, sub);
		assert_int_equal(d->eax | d->ebx | d->ecx | d->edx, 0);
	}
	free(in);
	free(c);
}

static void test_amd_leaves(void **state)
{
	(void)state;
	for (size_t t = 0; t < ARRAY_SIZE(topologies); t++) {
		unsigned count = topologies[t].count;
		for (unsigned i = 0; i < count; i += count > 4 ? 7 : 1) {
			struct kvm_cpuid2 *c = vcpu_cpuid(i, count, false);
			const struct kvm_cpuid_entry2 *e8 = leaf(c, 0x80000008, 0);
			assert_int_equal(e8->ecx & 0xff, count - 1);         /* NC */
			unsigned id_size = (e8->ecx >> 12) & 0xf;             /* ApicIdSize */
			if (id_size != 0 && (1u << id_size) < count)
				fail_msg("%u vCPUs: ApicIdSize %u too small", count, id_size);
			assert_int_equal(e8->eax, host_leaf(0x80000008, 0)->eax);
			assert_int_equal(leaf(c, 0x8000001e, 0)->eax, i);   /* extended APIC id */
			free(c);
		}
	}
}

static void test_kvm_leaves_untouched(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = vcpu_cpuid(3, 4, true);
	static const uint32_t fns[] = { 0x0, 0x40000000, 0x40000001, 0x80000000 };
	for (size_t i = 0; i < ARRAY_SIZE(fns); i++) {
		const struct kvm_cpuid_entry2 *e = leaf(c, fns[i], 0), *h = host_leaf(fns[i], 0);
		assert_memory_equal(e, h, sizeof(*e));
	}
	const struct kvm_cpuid_entry2 *kvm = leaf(c, 0x40000000, 0);
	char sig[13] = { 0 };
	memcpy(sig, &kvm->ebx, 4);
	memcpy(sig + 4, &kvm->ecx, 4);
	memcpy(sig + 8, &kvm->edx, 4);
	assert_string_equal(sig, "KVMKVMKVM");
	free(c);
}

static void test_input_not_modified(void **state)
{
	(void)state;
	struct kvm_cpuid2 *in = host_cpuid();
	size_t size = sizeof(*in) + in->nent * sizeof(in->entries[0]);
	struct kvm_cpuid2 *saved = malloc(size);
	memcpy(saved, in, size);
	for (unsigned i = 0; i < 4; i++) {
		struct cpuid_topology topo = { .index = i, .count = 4, .tsc_deadline = true };
		struct kvm_cpuid2 *out = cpuid_for_vcpu(in, &topo);
		assert_non_null(out);
		assert_ptr_not_equal(out, in);
		assert_memory_equal(in, saved, size);
		assert_int_equal(cpuid_find(out, 0x1, 0)->ebx >> 24, i);
		free(out);
	}
	free(saved);
	free(in);
}

static void test_find(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = host_cpuid();
	struct kvm_cpuid_entry2 *e = cpuid_find(c, 0xb, 1);
	assert_non_null(e);
	assert_int_equal(e->index, 1);
	assert_int_equal(e->ecx, 0x201);
	e = cpuid_find(c, 0xd, 18);
	assert_non_null(e);
	assert_int_equal(e->eax, 0x2000);
	/* Leaf 1 has no significant index: any subleaf finds it. */
	e = cpuid_find(c, 0x1, 7);
	assert_non_null(e);
	assert_int_equal(e->function, 0x1);
	assert_null(cpuid_find(c, 0x4, 9));
	assert_null(cpuid_find(c, 0x12345678, 0));
	assert_null(cpuid_find(c, 0x80000001, 0));
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaf1),
		cmocka_unit_test(test_tsc_deadline),
		cmocka_unit_test(test_htt),
		cmocka_unit_test(test_leafb),
		cmocka_unit_test(test_leaf4),
		cmocka_unit_test(test_leaf4_many_cpus),
		cmocka_unit_test(test_amx_removed),
		cmocka_unit_test(test_hide_xsave),
		cmocka_unit_test(test_amd_leaves),
		cmocka_unit_test(test_kvm_leaves_untouched),
		cmocka_unit_test(test_input_not_modified),
		cmocka_unit_test(test_find),
	};
	return cmocka_run_group_tests_name("hv/cpuid", tests, NULL, NULL);
}

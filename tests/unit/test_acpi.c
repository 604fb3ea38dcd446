/*
 * Unit tests for acpi_build (src/hv/acpi.h), read back the way an OS does:
 * find the RSDP, check both its checksums, follow the XSDT to the FADT and
 * MADT by guest-physical address, the FADT to the FACS and DSDT, and check
 * every table's checksum and the contents Linux relies on: one enabled
 * local APIC per vCPU with APIC ids 0..n-1, one I/O APIC, the SCI override,
 * the PM1a blocks and reset register of dev/pm.c and dev/reset.c, and the
 * \_S5 package for poweroff. Offsets are those of the ACPI 6.4 spec.
 * (acpi_iasl.py runs an independent decoder, iasl, over the same tables.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/util.h"
#include "hv/acpi.h"
#include "hv/layout.h"

#define SDT_HEADER 36

/* FADT field offsets (ACPI 6.4, table 5.9). */
#define FADT_FIRMWARE_CTRL   36
#define FADT_DSDT            40
#define FADT_SCI_INT         46
#define FADT_SMI_CMD         48
#define FADT_PM1A_EVT_BLK    56
#define FADT_PM1A_CNT_BLK    64
#define FADT_PM1_EVT_LEN     88
#define FADT_PM1_CNT_LEN     89
#define FADT_CENTURY         108
#define FADT_FLAGS           112
#define FADT_RESET_REG       116
#define FADT_RESET_VALUE     128
#define FADT_X_FIRMWARE_CTRL 132
#define FADT_X_DSDT          140
#define FADT_X_PM1A_EVT_BLK  148
#define FADT_X_PM1A_CNT_BLK  172
#define FADT_LENGTH_V6       276

#define FADT_FLAG_PWR_BUTTON    (1u << 4)   /* set: power button is a control method */
#define FADT_FLAG_RESET_REG_SUP (1u << 10)
#define FADT_FLAG_HW_REDUCED    (1u << 20)

#define GAS_SYSTEM_IO 1
#define CMOS_CENTURY  0x32

#define MADT_LAPIC    0
#define MADT_IOAPIC   1
#define MADT_ISO      2

/* The buffer is the guest's ACPI area, translated by `base`. */
struct acpi_view {
	uint8_t *buf;
	size_t cap;
	uint64_t base;
	struct acpi_tables t;
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum_bytes(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* The table at guest address gpa, after checking it lies in the built area. */
static const uint8_t *at_gpa(const struct acpi_view *v, uint64_t gpa, size_t len)
{
	if (gpa < v->base || gpa - v->base > v->t.size || len > v->t.size - (gpa - v->base))
		fail_msg("gpa 0x%llx+%zu is outside the ACPI tables [0x%llx, +0x%zx)",
			 (unsigned long long)gpa, len, (unsigned long long)v->base, v->t.size);
	return v->buf + (gpa - v->base);
}

/* A table with a standard header: signature, sane length, checksum 0. */
static const uint8_t *sdt_at(const struct acpi_view *v, uint64_t gpa, const char *sig)
{
	const uint8_t *h = at_gpa(v, gpa, SDT_HEADER);
	if (memcmp(h, sig, 4) != 0)
		fail_msg("table at 0x%llx is '%.4s', want '%s'", (unsigned long long)gpa,
			 (const char *)h, sig);
	uint32_t len = rd32(h + 4);
	assert_true(len >= SDT_HEADER);
	h = at_gpa(v, gpa, len);
	if (sum_bytes(h, len) != 0)
		fail_msg("%s: checksum does not sum to 0", sig);
	return h;
}

static void build(struct acpi_view *v, unsigned ncpus)
{
	v->cap = LAYOUT_ACPI_MAX;
	v->base = LAYOUT_ACPI_ADDR;
	v->buf = malloc(v->cap);
	assert_non_null(v->buf);
	if (!acpi_build(v->buf, v->cap, v->base, ncpus, &v->t))
		fail_msg("acpi_build failed for %u vCPUs", ncpus);
	assert_true(v->t.size > 0 && v->t.size <= v->cap);
}

static const uint8_t *rsdp_check(const struct acpi_view *v)
{
	/* The OS scans 0xE0000-0xFFFFF on 16-byte boundaries. */
	assert_int_equal(v->t.rsdp_gpa % 16, 0);
	assert_true(v->t.rsdp_gpa >= 0xe0000 && v->t.rsdp_gpa + 36 <= 0x100000);
	const uint8_t *r = at_gpa(v, v->t.rsdp_gpa, 36);
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum_bytes(r, 20), 0);
	assert_true(r[15] >= 2);                 /* revision: ACPI 2.0+, has an XSDT */
	assert_int_equal(rd32(r + 20), 36);      /* length */
	assert_int_equal(sum_bytes(r, 36), 0);   /* extended checksum */
	return r;
}

/* Follows RSDP -> XSDT and returns the table the XSDT lists with `sig`. */
static const uint8_t *xsdt_find(const struct acpi_view *v, const char *sig, uint64_t *gpa)
{
	const uint8_t *r = rsdp_check(v);
	const uint8_t *x = sdt_at(v, rd64(r + 24), "XSDT");
	uint32_t len = rd32(x + 4);
	assert_int_equal((len - SDT_HEADER) % 8, 0);
	const uint8_t *found = NULL;
	for (uint32_t off = SDT_HEADER; off < len; off += 8) {
		uint64_t entry = rd64(x + off);
		const uint8_t *t = at_gpa(v, entry, SDT_HEADER);
		if (memcmp(t, sig, 4) == 0) {
			if (found)
				fail_msg("XSDT lists %s twice", sig);
			found = sdt_at(v, entry, sig);
			*gpa = entry;
		}
	}
	if (!found)
		fail_msg("XSDT does not list %s", sig);
	return found;
}

static void check_every_table(unsigned ncpus)
{
	struct acpi_view v;
	build(&v, ncpus);
	rsdp_check(&v);
	assert_in_range(v.t.count, 5, ACPI_MAX_TABLES);
	for (unsigned i = 0; i < v.t.count; i++) {
		const struct acpi_table_ref *ref = &v.t.table[i];
		assert_int_equal(ref->gpa, v.base + ref->offset);
		assert_true(ref->offset + ref->length <= v.t.size);
		const uint8_t *p = v.buf + ref->offset;
		assert_memory_equal(p, ref->signature, 4);
		assert_int_equal(rd32(p + 4), ref->length);
		if (strcmp(ref->signature, "FACS") == 0) {
			assert_int_equal(ref->gpa % 64, 0); /* no checksum; 64-byte aligned */
			continue;
		}
		if (sum_bytes(p, ref->length) != 0)
			fail_msg("%u vCPUs: %s checksum is wrong", ncpus, ref->signature);
		/* Tables must not overlap each other. */
		for (unsigned j = 0; j < i; j++) {
			const struct acpi_table_ref *o = &v.t.table[j];
			assert_false(ref->offset < o->offset + o->length &&
				     o->offset < ref->offset + ref->length);
		}
	}
	free(v.buf);
}

static void test_checksums(void **state)
{
	(void)state;
	static const unsigned counts[] = { 1, 2, 4, 32, 254 };
	for (size_t i = 0; i < ARRAY_SIZE(counts); i++)
		check_every_table(counts[i]);
}

/* The same tables wherever the buffer is placed: pointers follow `base`. */
static void test_base_translation(void **state)
{
	(void)state;
	struct acpi_view v = { .cap = LAYOUT_ACPI_MAX, .base = 0xf0000 };
	v.buf = malloc(v.cap);
	assert_true(acpi_build(v.buf, v.cap, v.base, 2, &v.t));
	assert_int_equal(v.t.rsdp_gpa, 0xf0000);
	uint64_t gpa;
	xsdt_find(&v, "FACP", &gpa);
	xsdt_find(&v, "APIC", &gpa);
	free(v.buf);
}

static void check_fadt(unsigned ncpus)
{
	struct acpi_view v;
	build(&v, ncpus);
	uint64_t gpa;
	const uint8_t *f = xsdt_find(&v, "FACP", &gpa);
	assert_true(rd32(f + 4) >= FADT_LENGTH_V6);
	assert_true(f[8] >= 5); /* revision: has the 64-bit fields */

	/* DSDT and FACS, 32- and 64-bit pointers agreeing. */
	uint64_t dsdt = rd64(f + FADT_X_DSDT);
	assert_true(dsdt != 0);
	assert_true(rd32(f + FADT_DSDT) == 0 || rd32(f + FADT_DSDT) == dsdt);
	sdt_at(&v, dsdt, "DSDT");
	uint64_t facs = rd64(f + FADT_X_FIRMWARE_CTRL);
	assert_true(facs != 0);
	assert_true(rd32(f + FADT_FIRMWARE_CTRL) == 0 || rd32(f + FADT_FIRMWARE_CTRL) == facs);
	const uint8_t *fc = at_gpa(&v, facs, 64);
	assert_memory_equal(fc, "FACS", 4);
	assert_true(rd32(fc + 4) >= 64);
	assert_int_equal(facs % 64, 0);

	/* Fixed hardware as dev/pm.c implements it. */
	assert_int_equal(rd16(f + FADT_SCI_INT), IRQ_SCI);
	assert_int_equal(rd32(f + FADT_SMI_CMD), 0);       /* always in ACPI mode */
	assert_int_equal(rd32(f + FADT_PM1A_EVT_BLK), PORT_PM1A_EVT);
	assert_int_equal(rd32(f + FADT_PM1A_CNT_BLK), PORT_PM1A_CNT);
	assert_int_equal(f[FADT_PM1_EVT_LEN], 4);
	assert_int_equal(f[FADT_PM1_CNT_LEN], 2);
	assert_int_equal(f[FADT_X_PM1A_EVT_BLK], GAS_SYSTEM_IO);
	assert_int_equal(rd64(f + FADT_X_PM1A_EVT_BLK + 4), PORT_PM1A_EVT);
	assert_int_equal(f[FADT_X_PM1A_CNT_BLK], GAS_SYSTEM_IO);
	assert_int_equal(rd64(f + FADT_X_PM1A_CNT_BLK + 4), PORT_PM1A_CNT);
	uint32_t flags = rd32(f + FADT_FLAGS);
	assert_false(flags & FADT_FLAG_HW_REDUCED);
	assert_false(flags & FADT_FLAG_PWR_BUTTON);        /* fixed-feature power button */
	assert_true(flags & FADT_FLAG_RESET_REG_SUP);
	/* Reset register: port 0xCF9 (dev/reset.c), value with the CPU-reset bit. */
	assert_int_equal(f[FADT_RESET_REG], GAS_SYSTEM_IO);
	assert_int_equal(rd64(f + FADT_RESET_REG + 4), PORT_RESET);
	assert_int_equal(f[FADT_RESET_VALUE], RESET_VALUE);
	assert_true(RESET_VALUE & 0x04);
	assert_int_equal(f[FADT_CENTURY], CMOS_CENTURY);
	free(v.buf);
}

static void test_fadt(void **state)
{
	(void)state;
	check_fadt(1);
	check_fadt(4);
}

static void check_madt(unsigned ncpus)
{
	struct acpi_view v;
	build(&v, ncpus);
	uint64_t gpa;
	const uint8_t *m = xsdt_find(&v, "APIC", &gpa);
	uint32_t len = rd32(m + 4);
	assert_int_equal(rd32(m + 36), LAYOUT_LAPIC_ADDR);

	bool seen[256] = { false };
	unsigned enabled = 0, ioapics = 0, sci_overrides = 0;
	uint32_t off = 44;
	while (off < len) {
		assert_true(off + 2 <= len);
		uint8_t type = m[off], elen = m[off + 1];
		assert_true(elen >= 2);
		if (off + elen > len)
			fail_msg("%u vCPUs: MADT entry at %u runs past the table", ncpus, off);
		const uint8_t *e = m + off;
		if (type == MADT_LAPIC) {
			assert_int_equal(elen, 8);
			if (rd32(e + 4) & 1) {
				uint8_t apic_id = e[3];
				if (apic_id >= ncpus || seen[apic_id])
					fail_msg("%u vCPUs: APIC id %u unexpected or repeated",
						 ncpus, apic_id);
				seen[apic_id] = true;
				enabled++;
			}
		} else if (type == MADT_IOAPIC) {
			assert_int_equal(elen, 12);
			assert_int_equal(rd32(e + 4), LAYOUT_IOAPIC_ADDR);
			assert_int_equal(rd32(e + 8), 0); /* GSI base */
			ioapics++;
		} else if (type == MADT_ISO) {
			assert_int_equal(elen, 10);
			if (e[3] == IRQ_SCI) {
				assert_int_equal(e[2], 0);                 /* ISA */
				assert_int_equal(rd32(e + 4), IRQ_SCI);
				assert_int_equal((rd16(e + 8) >> 2) & 3, 3); /* level-triggered */
				sci_overrides++;
			}
		}
		off += elen;
	}
	assert_int_equal(off, len);
	if (enabled != ncpus)
		fail_msg("%u vCPUs: MADT has %u enabled local APICs", ncpus, enabled);
	assert_int_equal(ioapics, 1);
	assert_int_equal(sci_overrides, 1);
	free(v.buf);
}

static void test_madt(void **state)
{
	(void)state;
	static const unsigned counts[] = { 1, 2, 4, 32, 254 };
	for (size_t i = 0; i < ARRAY_SIZE(counts); i++)
		check_madt(counts[i]);
}

/*
 * The value of Name(NAME, ...) in the DSDT of `v` (the byte after NameOp
 * and the name), and in *left the bytes from there to the table's end;
 * fails the test when the DSDT has no such name.
 */
static const uint8_t *dsdt_name_value(const struct acpi_view *v, const char *name, size_t *left)
{
	uint64_t gpa;
	const uint8_t *f = xsdt_find(v, "FACP", &gpa);
	const uint8_t *d = sdt_at(v, rd64(f + FADT_X_DSDT), "DSDT");
	const uint8_t *aml = d + SDT_HEADER;
	size_t n = rd32(d + 4) - SDT_HEADER;
	for (size_t i = 1; i + 4 <= n; i++)
		if (aml[i - 1] == 0x08 && memcmp(aml + i, name, 4) == 0) { /* NameOp */
			*left = n - (i + 4);
			return aml + i + 4;
		}
	fail_msg("DSDT has no Name(%s, ...)", name);
	return NULL;
}

/* DSDT: Name(_S5_, Package(){ SLP_TYPa, SLP_TYPb, ...}) with the S5 type of dev/pm.c. */
static void test_dsdt_s5(void **state)
{
	(void)state;
	struct acpi_view v;
	build(&v, 2);
	size_t left;
	const uint8_t *s5 = dsdt_name_value(&v, "_S5_", &left);
	assert_true(left >= 7);
	assert_int_equal(s5[0], 0x12);          /* PackageOp */
	assert_true(s5[1] < 0x40);              /* one-byte PkgLength */
	assert_true(s5[1] <= left - 1);
	assert_true(s5[2] >= 2);                /* at least SLP_TYPa and SLP_TYPb */
	/* SLP_TYPa as BytePrefix value (or ZeroOp/OneOp for 0/1). */
	const uint8_t *el = s5 + 3;
	unsigned typa = el[0] == 0x0a ? el[1] : el[0] == 0x01 ? 1u : el[0] == 0x00 ? 0u : 0xffu;
	assert_int_equal(typa, ACPI_SLP_TYP_S5);
	free(v.buf);
}

/*
 * DSDT: Name(_PRT, Package(31){ Package(4){ slot << 16 | 0xffff, 0, 0, GSI }
 * ... }) under PCI0, one INTA per slot 1-31, each entry with the GSI that
 * virtio-pci raises (LAYOUT_PCI_INTX_GSI). Entries are read as iasl writes
 * them: DWordPrefix address, ZeroOp pin and source, BytePrefix GSI.
 */
static void test_dsdt_prt(void **state)
{
	(void)state;
	struct acpi_view v;
	build(&v, 2);
	size_t n;
	const uint8_t *aml = dsdt_name_value(&v, "_PRT", &n);
	assert_true(n >= 3);
	assert_int_equal(aml[0], 0x12);                /* PackageOp */
	unsigned lead = aml[1] >> 6;                   /* extra PkgLength bytes */
	size_t p = 2 + lead;
	assert_int_equal(aml[p++], LAYOUT_PCI_SLOTS - 1); /* NumElements */
	for (unsigned slot = 1; slot < LAYOUT_PCI_SLOTS; slot++) {
		static const uint8_t head[] = { 0x12, 0x0b, 0x04, 0x0c }; /* Package(4) { DWord */
		assert_true(p + 12 <= n);
		assert_memory_equal(aml + p, head, sizeof(head));
		assert_int_equal(rd32(aml + p + 4), slot << 16 | 0xffff);
		assert_int_equal(aml[p + 8], 0x00);    /* pin INTA */
		assert_int_equal(aml[p + 9], 0x00);    /* source: a GSI */
		assert_int_equal(aml[p + 10], 0x0a);   /* BytePrefix */
		assert_int_equal(aml[p + 11], LAYOUT_PCI_INTX_GSI(slot));
		p += 12;
	}
	free(v.buf);
}

static void test_reject_cpu_counts(void **state)
{
	(void)state;
	uint8_t *buf = malloc(LAYOUT_ACPI_MAX);
	struct acpi_tables t;
	assert_false(acpi_build(buf, LAYOUT_ACPI_MAX, LAYOUT_ACPI_ADDR, 0, &t));
	assert_false(acpi_build(buf, LAYOUT_ACPI_MAX, LAYOUT_ACPI_ADDR, 255, &t));
	assert_false(acpi_build(buf, LAYOUT_ACPI_MAX, LAYOUT_ACPI_ADDR, 256, &t));
	assert_false(acpi_build(buf, LAYOUT_ACPI_MAX, LAYOUT_ACPI_ADDR, UINT32_MAX, &t));
	assert_true(acpi_build(buf, LAYOUT_ACPI_MAX, LAYOUT_ACPI_ADDR, ACPI_MAX_CPUS, &t));
	free(buf);
}

/* Every capacity short of what the tables need fails, never writes past cap. */
static void test_buffer_too_small(void **state)
{
	(void)state;
	struct acpi_view v;
	build(&v, 32);
	size_t need = v.t.size;
	free(v.buf);
	for (size_t cap = 0; cap < need; cap++) {
		uint8_t *buf = malloc(cap ? cap : 1); /* exact size: ASan catches overruns */
		struct acpi_tables t;
		if (acpi_build(buf, cap, LAYOUT_ACPI_ADDR, 32, &t))
			fail_msg("acpi_build succeeded in %zu bytes; the tables need %zu", cap, need);
		free(buf);
	}
	uint8_t *buf = malloc(need);
	struct acpi_tables t;
	assert_true(acpi_build(buf, need, LAYOUT_ACPI_ADDR, 32, &t));
	free(buf);
}

static void test_checksum_helper(void **state)
{
	(void)state;
	const uint8_t p[] = { 0x10, 0xf0, 0x01, 0xff };
	assert_int_equal(acpi_checksum(p, 0), 0);
	assert_int_equal(acpi_checksum(p, 2), 0);
	assert_int_equal(acpi_checksum(p, 3), 1);
	assert_int_equal(acpi_checksum(p, 4), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksums),
		cmocka_unit_test(test_base_translation),
		cmocka_unit_test(test_fadt),
		cmocka_unit_test(test_madt),
		cmocka_unit_test(test_dsdt_s5),
		cmocka_unit_test(test_dsdt_prt),
		cmocka_unit_test(test_reject_cpu_counts),
		cmocka_unit_test(test_buffer_too_small),
		cmocka_unit_test(test_checksum_helper),
	};
	return cmocka_run_group_tests_name("hv/acpi", tests, NULL, NULL);
}

/*
 * ACPI table generation (see acpi.h). Tables are appended to one buffer by a
 * little-endian writer; each table is begun with a header placeholder and
 * finished by filling in its length and checksum. Layouts follow ACPI 6.4;
 * offsets that matter are named where they are written.
 */
#include "hv/acpi.h"

#include <string.h>

#include "base/util.h"
#include "hv/aml.h"
#include "hv/layout.h"

#define ACPI_OEM_ID        "SHOJI "
#define ACPI_OEM_TABLE_ID  "SHOJIVM "
#define ACPI_CREATOR_ID    "SHOJ"
#define SDT_HEADER_LEN     36

#define GAS_SYSTEM_IO      1
#define GAS_ACCESS_BYTE    1
#define GAS_ACCESS_WORD    2
#define GAS_ACCESS_DWORD   3

/* FADT flags */
#define FADT_WBINVD            (1u << 0)
#define FADT_PROC_C1           (1u << 2)
#define FADT_SLP_BUTTON        (1u << 5)  /* no fixed-feature sleep button */
#define FADT_FIX_RTC           (1u << 6)  /* no RTC wake status in PM1 */
#define FADT_RESET_REG_SUP     (1u << 10)
/* IA-PC boot architecture flags: legacy ISA devices, no VGA; no 8042. */
#define FADT_IAPC_LEGACY       (1u << 0)
#define FADT_IAPC_NO_VGA       (1u << 2)

#define MADT_PCAT_COMPAT       1u
#define MADT_LAPIC_ENABLED     1u
#define MADT_ISO_ACTIVE_HIGH   0x1u
#define MADT_ISO_LEVEL         (0x3u << 2)

struct acpi_writer {
	uint8_t *buf;
	size_t cap;
	size_t len;
	uint64_t base;
	bool overflow;
};

static void put_bytes(struct acpi_writer *w, const void *src, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->len, src, n);
	w->len += n;
}

static void put_le(struct acpi_writer *w, uint64_t v, unsigned bytes)
{
	uint8_t b[8];
	le_store(b, v, bytes);
	put_bytes(w, b, bytes);
}

static void put8(struct acpi_writer *w, uint8_t v) { put_le(w, v, 1); }
static void put16(struct acpi_writer *w, uint16_t v) { put_le(w, v, 2); }
static void put32(struct acpi_writer *w, uint32_t v) { put_le(w, v, 4); }
static void put64(struct acpi_writer *w, uint64_t v) { put_le(w, v, 8); }

static void put_zeros(struct acpi_writer *w, size_t n)
{
	while (n-- > 0)
		put8(w, 0);
}

static void align_to(struct acpi_writer *w, size_t align)
{
	while (!w->overflow && w->len % align)
		put8(w, 0);
}

/* Patches a little-endian value at an absolute buffer offset. */
static void patch_le(struct acpi_writer *w, size_t at, uint64_t v, unsigned bytes)
{
	if (w->overflow || at + bytes > w->len)
		return;
	le_store(w->buf + at, v, bytes);
}

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum;
}

static void put_gas(struct acpi_writer *w, uint8_t space, uint8_t bit_width,
		    uint8_t access, uint64_t address)
{
	put8(w, space);
	put8(w, bit_width);
	put8(w, 0); /* bit offset */
	put8(w, access);
	put64(w, address);
}

static size_t table_begin(struct acpi_writer *w, struct acpi_tables *out, const char *sig,
			  uint8_t revision)
{
	align_to(w, 16);
	size_t start = w->len;
	put_bytes(w, sig, 4);
	put32(w, 0); /* length, patched by table_end */
	put8(w, revision);
	put8(w, 0);  /* checksum, patched by table_end */
	put_bytes(w, ACPI_OEM_ID, 6);
	put_bytes(w, ACPI_OEM_TABLE_ID, 8);
	put32(w, 1); /* OEM revision */
	put_bytes(w, ACPI_CREATOR_ID, 4);
	put32(w, 1); /* creator revision */
	if (out->count < ACPI_MAX_TABLES) {
		struct acpi_table_ref *ref = &out->table[out->count++];
		memcpy(ref->signature, sig, 4);
		ref->signature[4] = '\0';
		ref->offset = start;
		ref->gpa = w->base + start;
	}
	return start;
}

static void table_end(struct acpi_writer *w, struct acpi_tables *out, size_t start)
{
	if (w->overflow)
		return;
	size_t length = w->len - start;
	patch_le(w, start + 4, length, 4);
	w->buf[start + 9] = (uint8_t)(0 - acpi_checksum(w->buf + start, length));
	for (unsigned i = 0; i < out->count; i++)
		if (out->table[i].offset == start)
			out->table[i].length = length;
}

/*
 * _PRT: where each slot's INTA goes, as Package { address (slot << 16 |
 * 0xffff: any function), pin 0 (INTA), source 0 (a GSI, not a link
 * device), the GSI }. An ACPI OS routes INTx only through this table.
 */
static void dsdt_pci_routing(struct aml *body)
{
	struct aml entries = { .n = 0 }, prt = { .n = 0 };
	for (unsigned slot = 1; slot < LAYOUT_PCI_SLOTS; slot++) {
		const uint64_t e[] = { (uint64_t)slot << 16 | 0xffff, 0, 0, LAYOUT_PCI_INTX_GSI(slot) };
		aml_package_integers(&entries, e, 4);
	}
	aml_package(&prt, LAYOUT_PCI_SLOTS - 1, &entries);
	aml_name(body, "_PRT", &prt);
}

/*
 * PCI0: the host bridge the OS must find in the namespace before it scans
 * bus 0 (an ACPI OS does not probe for one). Its _CRS hands the OS the bus
 * number, the config ports, the rest of the I/O space and the BAR window.
 */
static void dsdt_pci_root(struct aml *sb)
{
	struct aml crs = { .n = 0 }, body = { .n = 0 }, v = { .n = 0 };
	aml_res_bus_numbers(&crs, 0, 0);
	aml_res_io_fixed(&crs, PORT_PCI_CONFIG, 8);
	aml_res_io_window(&crs, 0x0000, 0x0cf7);
	aml_res_io_window(&crs, 0x0d00, 0xffff);
	aml_res_mem32_window(&crs, (uint32_t)LAYOUT_PCI_MMIO_START,
			     (uint32_t)(LAYOUT_PCI_MMIO_START + LAYOUT_PCI_MMIO_SIZE - 1));
	aml_res_end(&crs);

	aml_eisaid(&v, "PNP0A03");
	aml_name(&body, "_HID", &v);
	aml_name_integer(&body, "_SEG", 0);
	aml_name_integer(&body, "_BBN", 0);
	aml_name_integer(&body, "_UID", 0);
	v.n = 0;
	aml_buffer(&v, &crs);
	aml_name(&body, "_CRS", &v);
	dsdt_pci_routing(&body);
	aml_device(sb, "PCI0", &body);
}

/*
 * DSDT: \_S5 = Package { SLP_TYPa, SLP_TYPb, 0, 0 }, read by the OS for
 * poweroff, and the PCI root bridge under \_SB.
 */
static size_t build_dsdt(struct acpi_writer *w, struct acpi_tables *out)
{
	struct aml aml = { .n = 0 }, sb = { .n = 0 }, pkg = { .n = 0 };
	const uint64_t s5[] = { ACPI_SLP_TYP_S5, ACPI_SLP_TYP_S5, 0, 0 };
	aml_package_integers(&pkg, s5, 4);
	aml_name(&aml, "_S5_", &pkg);
	dsdt_pci_root(&sb);
	aml_scope(&aml, "_SB_", &sb); /* at the root already: no "\\" prefix, as iasl writes it */

	size_t start = table_begin(w, out, "DSDT", 2);
	if (aml.overflow)
		w->overflow = true;
	put_bytes(w, aml.b, aml.n);
	table_end(w, out, start);
	return start;
}

/* FACS: no checksum, 64-byte aligned; present because the FADT is not hardware-reduced. */
static size_t build_facs(struct acpi_writer *w, struct acpi_tables *out)
{
	align_to(w, 64);
	size_t start = w->len;
	put_bytes(w, "FACS", 4);
	put32(w, 64);       /* length */
	put32(w, 0);        /* hardware signature */
	put32(w, 0);        /* firmware waking vector */
	put32(w, 0);        /* global lock */
	put32(w, 0);        /* flags */
	put64(w, 0);        /* X firmware waking vector */
	put8(w, 2);         /* version */
	put_zeros(w, 3);
	put32(w, 0);        /* OSPM flags */
	put_zeros(w, 24);
	if (out->count < ACPI_MAX_TABLES && !w->overflow)
		out->table[out->count++] = (struct acpi_table_ref){
			"FACS", w->base + start, start, 64 };
	return start;
}

static void fadt_fixed_blocks(struct acpi_writer *w)
{
	put32(w, PORT_PM1A_EVT);  /* 56 PM1a_EVT_BLK */
	put32(w, 0);              /* 60 PM1b_EVT_BLK */
	put32(w, PORT_PM1A_CNT);  /* 64 PM1a_CNT_BLK */
	put32(w, 0);              /* 68 PM1b_CNT_BLK */
	put32(w, 0);              /* 72 PM2_CNT_BLK */
	put32(w, 0);              /* 76 PM_TMR_BLK: no PM timer, kvmclock is better */
	put32(w, 0);              /* 80 GPE0_BLK */
	put32(w, 0);              /* 84 GPE1_BLK */
	put8(w, 4);               /* 88 PM1_EVT_LEN */
	put8(w, 2);               /* 89 PM1_CNT_LEN */
	put8(w, 0);               /* 90 PM2_CNT_LEN */
	put8(w, 0);               /* 91 PM_TMR_LEN */
	put8(w, 0);               /* 92 GPE0_BLK_LEN */
	put8(w, 0);               /* 93 GPE1_BLK_LEN */
	put8(w, 0);               /* 94 GPE1_BASE */
	put8(w, 0);               /* 95 CST_CNT */
	put16(w, 101);            /* 96 P_LVL2_LAT: > 100, no C2 */
	put16(w, 1001);           /* 98 P_LVL3_LAT: > 1000, no C3 */
	put16(w, 0);              /* 100 FLUSH_SIZE */
	put16(w, 0);              /* 102 FLUSH_STRIDE */
	put8(w, 0);               /* 104 DUTY_OFFSET */
	put8(w, 0);               /* 105 DUTY_WIDTH */
	put8(w, 0);               /* 106 DAY_ALRM */
	put8(w, 0);               /* 107 MON_ALRM */
	put8(w, 0x32);            /* 108 CENTURY: CMOS register of the century */
	put16(w, FADT_IAPC_LEGACY | FADT_IAPC_NO_VGA); /* 109 IAPC_BOOT_ARCH */
	put8(w, 0);               /* 111 reserved */
}

static size_t build_fadt(struct acpi_writer *w, struct acpi_tables *out,
			 uint64_t facs_gpa, uint64_t dsdt_gpa)
{
	size_t start = table_begin(w, out, "FACP", 6);
	put32(w, (uint32_t)facs_gpa);      /* 36 FIRMWARE_CTRL */
	put32(w, (uint32_t)dsdt_gpa);      /* 40 DSDT */
	put8(w, 0);                        /* 44 reserved */
	put8(w, 1);                        /* 45 preferred PM profile: desktop */
	put16(w, IRQ_SCI);                 /* 46 SCI_INT */
	put32(w, 0);                       /* 48 SMI_CMD: none, ACPI mode is always on */
	put8(w, 0);                        /* 52 ACPI_ENABLE */
	put8(w, 0);                        /* 53 ACPI_DISABLE */
	put8(w, 0);                        /* 54 S4BIOS_REQ */
	put8(w, 0);                        /* 55 PSTATE_CNT */
	fadt_fixed_blocks(w);
	put32(w, FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC |
		 FADT_RESET_REG_SUP);      /* 112 flags; power button is fixed-feature */
	put_gas(w, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE, PORT_RESET); /* 116 RESET_REG */
	put8(w, RESET_VALUE);              /* 128 RESET_VALUE */
	put16(w, 0);                       /* 129 ARM_BOOT_ARCH */
	put8(w, 4);                        /* 131 FADT minor version (6.4) */
	put64(w, facs_gpa);                /* 132 X_FIRMWARE_CTRL */
	put64(w, dsdt_gpa);                /* 140 X_DSDT */
	put_gas(w, GAS_SYSTEM_IO, 32, GAS_ACCESS_WORD, PORT_PM1A_EVT); /* 148 X_PM1a_EVT_BLK */
	put_gas(w, 0, 0, 0, 0);            /* 160 X_PM1b_EVT_BLK */
	put_gas(w, GAS_SYSTEM_IO, 16, GAS_ACCESS_WORD, PORT_PM1A_CNT); /* 172 X_PM1a_CNT_BLK */
	for (int i = 0; i < 7; i++)        /* 184 PM1b_CNT .. 256 SLEEP_STATUS */
		put_gas(w, 0, 0, 0, 0);
	put_bytes(w, "SHOJI\0\0\0", 8);   /* 268 hypervisor vendor identity */
	table_end(w, out, start);
	return start;
}

static size_t build_madt(struct acpi_writer *w, struct acpi_tables *out, unsigned ncpus)
{
	size_t start = table_begin(w, out, "APIC", 5);
	put32(w, (uint32_t)LAYOUT_LAPIC_ADDR);
	put32(w, MADT_PCAT_COMPAT); /* the in-kernel irqchip has dual 8259s */
	for (unsigned i = 0; i < ncpus; i++) {
		put8(w, 0);              /* processor local APIC */
		put8(w, 8);
		put8(w, (uint8_t)i);     /* ACPI processor UID */
		put8(w, (uint8_t)i);     /* APIC id, as in CPUID */
		put32(w, MADT_LAPIC_ENABLED);
	}
	put8(w, 1);                      /* I/O APIC */
	put8(w, 12);
	put8(w, 0);                      /* I/O APIC id (KVM's default) */
	put8(w, 0);
	put32(w, (uint32_t)LAYOUT_IOAPIC_ADDR);
	put32(w, 0);                     /* GSI base */
	put8(w, 2);                      /* interrupt source override: SCI */
	put8(w, 10);
	put8(w, 0);                      /* ISA bus */
	put8(w, IRQ_SCI);
	put32(w, IRQ_SCI);
	put16(w, MADT_ISO_ACTIVE_HIGH | MADT_ISO_LEVEL);
	put8(w, 4);                      /* local APIC NMI: LINT1 on every CPU */
	put8(w, 6);
	put8(w, 0xff);
	put16(w, 0);
	put8(w, 1);
	table_end(w, out, start);
	return start;
}

/* MCFG: ECAM for PCI segment 0, bus 0. */
static size_t build_mcfg(struct acpi_writer *w, struct acpi_tables *out)
{
	size_t start = table_begin(w, out, "MCFG", 1);
	put64(w, 0);                         /* reserved */
	put64(w, LAYOUT_PCI_ECAM_ADDR);
	put16(w, 0);                         /* segment group */
	put8(w, 0);                          /* first bus */
	put8(w, (uint8_t)(LAYOUT_PCI_ECAM_SIZE / (1 << 20) - 1)); /* last bus */
	put32(w, 0);                         /* reserved */
	table_end(w, out, start);
	return start;
}

static size_t build_xsdt(struct acpi_writer *w, struct acpi_tables *out,
			 const uint64_t *entries, unsigned n)
{
	size_t start = table_begin(w, out, "XSDT", 1);
	for (unsigned i = 0; i < n; i++)
		put64(w, entries[i]);
	table_end(w, out, start);
	return start;
}

static void build_rsdp(struct acpi_writer *w, uint64_t xsdt_gpa)
{
	size_t start = 0;
	put_bytes(w, "RSD PTR ", 8);
	put8(w, 0);                     /* checksum of the first 20 bytes */
	put_bytes(w, ACPI_OEM_ID, 6);
	put8(w, 2);                     /* revision: ACPI 2.0+ */
	put32(w, 0);                    /* RSDT address: XSDT only */
	put32(w, 36);                   /* length */
	put64(w, xsdt_gpa);
	put8(w, 0);                     /* extended checksum */
	put_zeros(w, 3);
	if (w->overflow)
		return;
	w->buf[start + 8] = (uint8_t)(0 - acpi_checksum(w->buf + start, 20));
	w->buf[start + 32] = (uint8_t)(0 - acpi_checksum(w->buf + start, 36));
}

bool acpi_build(uint8_t *buf, size_t cap, uint64_t base, unsigned ncpus, struct acpi_tables *out)
{
	memset(out, 0, sizeof(*out));
	if (ncpus == 0 || ncpus > ACPI_MAX_CPUS || cap < 36)
		return false;
	memset(buf, 0, cap);
	/* The RSDP goes first, at `base`, and is patched once the XSDT's place is known. */
	struct acpi_writer w = { .buf = buf, .cap = cap, .len = 36, .base = base };

	size_t dsdt = build_dsdt(&w, out);
	size_t facs = build_facs(&w, out);
	size_t fadt = build_fadt(&w, out, base + facs, base + dsdt);
	size_t madt = build_madt(&w, out, ncpus);
	size_t mcfg = build_mcfg(&w, out);
	uint64_t entries[] = { base + fadt, base + madt, base + mcfg };
	size_t xsdt = build_xsdt(&w, out, entries, 3);
	if (w.overflow)
		return false;

	struct acpi_writer rsdp = { .buf = buf, .cap = 36, .base = base };
	build_rsdp(&rsdp, base + xsdt);
	out->rsdp_gpa = base;
	out->size = w.len;
	return !rsdp.overflow;
}

/*
 * ACPI tables for the machine, generated at start-up into the legacy BIOS
 * area where Linux (and any ACPI OS) finds the RSDP: RSDP -> XSDT -> FADT
 * (-> FACS, DSDT), MADT and MCFG (PCI ECAM). The FADT describes classic fixed hardware (PM1a
 * event and control blocks, SCI on IRQ 9, a reset register) implemented by
 * dev/pm.c; the DSDT holds the \_S5 sleep package that makes poweroff work.
 */
#ifndef SHOJI_HV_ACPI_H
#define SHOJI_HV_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACPI_MAX_TABLES 8

struct acpi_table_ref {
	char signature[5];
	uint64_t gpa;
	size_t offset; /* in the built buffer */
	size_t length;
};

struct acpi_tables {
	uint64_t rsdp_gpa;
	size_t size;
	unsigned count;
	struct acpi_table_ref table[ACPI_MAX_TABLES];
};

/* The largest number of vCPUs the MADT can describe with xAPIC entries. */
#define ACPI_MAX_CPUS 254

/*
 * Builds all tables into buf (to be copied to guest address `base`).
 * Returns false if `cap` is too small or ncpus is out of range.
 */
bool acpi_build(uint8_t *buf, size_t cap, uint64_t base, unsigned ncpus, struct acpi_tables *out);

/* Sum of bytes, as the ACPI checksum rule needs (a table sums to 0). */
uint8_t acpi_checksum(const uint8_t *p, size_t len);

#endif

/*
 * acpi-dump: writes the ACPI tables shoji-vmm generates for N vCPUs
 * (default 4) into a directory, one file per table named by its signature
 * (RSDP.dat, XSDT.dat, FACP.dat, APIC.dat, DSDT.dat, FACS.dat), so that an
 * independent tool (acpica-tools' `iasl -d`, see acpi_iasl.sh) can check them.
 *
 * Usage: acpi-dump DIR [NCPUS [corrupt=SIG]]
 * corrupt=SIG flips one byte of table SIG after it is built; the test script
 * uses it to prove that it notices a bad table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv/acpi.h"
#include "hv/layout.h"

#define RSDP_LENGTH 36

static int write_file(const char *dir, const char *name, const uint8_t *p, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		fprintf(stderr, "acpi-dump: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t w = fwrite(p, 1, len, f);
	if (fclose(f) != 0 || w != len) {
		fprintf(stderr, "acpi-dump: %s: write failed\n", path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: acpi-dump DIR [NCPUS [corrupt=SIG]]\n");
		return 2;
	}
	unsigned ncpus = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 4;
	const char *corrupt = NULL;
	if (argc > 3) {
		if (strncmp(argv[3], "corrupt=", 8) != 0) {
			fprintf(stderr, "acpi-dump: bad argument '%s'\n", argv[3]);
			return 2;
		}
		corrupt = argv[3] + 8;
	}

	static uint8_t buf[LAYOUT_ACPI_MAX];
	struct acpi_tables t;
	if (!acpi_build(buf, sizeof(buf), LAYOUT_ACPI_ADDR, ncpus, &t)) {
		fprintf(stderr, "acpi-dump: acpi_build failed for %u vCPUs\n", ncpus);
		return 1;
	}
	if (t.rsdp_gpa < LAYOUT_ACPI_ADDR || t.rsdp_gpa - LAYOUT_ACPI_ADDR + RSDP_LENGTH > t.size) {
		fprintf(stderr, "acpi-dump: RSDP at 0x%llx is outside the built tables\n",
			(unsigned long long)t.rsdp_gpa);
		return 1;
	}
	uint8_t *rsdp = buf + (t.rsdp_gpa - LAYOUT_ACPI_ADDR);
	if (corrupt && strcmp(corrupt, "RSDP") == 0)
		rsdp[RSDP_LENGTH - 1] ^= 0x5a;
	if (write_file(argv[1], "RSDP", rsdp, RSDP_LENGTH) < 0)
		return 1;

	for (unsigned i = 0; i < t.count; i++) {
		const struct acpi_table_ref *r = &t.table[i];
		if (r->offset > t.size || r->length > t.size - r->offset || r->length < 8) {
			fprintf(stderr, "acpi-dump: table %s lies outside the built tables\n",
				r->signature);
			return 1;
		}
		uint8_t *p = buf + r->offset;
		/* Flip a byte in the body, never the signature or length. */
		if (corrupt && strcmp(corrupt, r->signature) == 0)
			p[r->length - 1] ^= 0x5a;
		if (write_file(argv[1], r->signature, p, r->length) < 0)
			return 1;
	}
	return 0;
}

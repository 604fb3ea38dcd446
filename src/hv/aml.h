/*
 * A minimal AML (ACPI Machine Language, ACPI 6.4 section 20) encoder for
 * the few objects shoji's DSDT needs: scopes, devices, named integers,
 * EISA ids, packages and resource-template buffers. Objects are built
 * inside-out: the body of a scope or device is encoded first, then wrapped
 * with its opcode and PkgLength.
 */
#ifndef SHOJI_HV_AML_H
#define SHOJI_HV_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_MAX 4096

struct aml {
	uint8_t b[AML_MAX];
	size_t n;
	bool overflow;
};

void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_append(struct aml *a, const struct aml *inner);
/* Integer with the shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWord). */
void aml_integer(struct aml *a, uint64_t v);
/* EisaId("PNP0A03") as a DWord constant. */
void aml_eisaid(struct aml *a, const char id[7]);
/* Name(NAME, <object already in `value`>); NAME is 4 characters, or \NAME. */
void aml_name(struct aml *a, const char *name, const struct aml *value);
void aml_name_integer(struct aml *a, const char *name, uint64_t v);
void aml_scope(struct aml *a, const char *name, const struct aml *body);
void aml_device(struct aml *a, const char *name, const struct aml *body);
/* Buffer holding `data` (for resource templates, with its end tag). */
void aml_buffer(struct aml *a, const struct aml *data);
/* Package { n integers }. */
void aml_package_integers(struct aml *a, const uint64_t *v, unsigned n);
/* Package of `n` elements whose encodings follow each other in `elements`. */
void aml_package(struct aml *a, unsigned n, const struct aml *elements);

/* Resource descriptors (ACPI 6.4 section 6.4), appended to a template. */
void aml_res_bus_numbers(struct aml *t, uint16_t first, uint16_t last);
void aml_res_io_fixed(struct aml *t, uint16_t base, uint8_t len);
void aml_res_io_window(struct aml *t, uint16_t min, uint16_t max);
void aml_res_mem32_window(struct aml *t, uint32_t min, uint32_t max);
void aml_res_end(struct aml *t);

#endif

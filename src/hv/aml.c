/* AML encoder (see aml.h). */
#include "hv/aml.h"

#include <string.h>

#include "base/util.h"

#define AML_ZERO       0x00
#define AML_ONE        0x01
#define AML_NAME_OP    0x08
#define AML_BYTE       0x0a
#define AML_WORD       0x0b
#define AML_DWORD      0x0c
#define AML_QWORD      0x0e
#define AML_SCOPE_OP   0x10
#define AML_BUFFER_OP  0x11
#define AML_PACKAGE_OP 0x12
#define AML_EXT_PREFIX 0x5b
#define AML_DEVICE_OP  0x82
#define AML_ROOT       0x5c

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->overflow || n > AML_MAX - a->n) {
		a->overflow = true;
		return;
	}
	memcpy(a->b + a->n, p, n);
	a->n += n;
}

static void aml_byte(struct aml *a, uint8_t v)
{
	aml_bytes(a, &v, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned bytes)
{
	uint8_t b[8];
	le_store(b, v, bytes);
	aml_bytes(a, b, bytes);
}

void aml_append(struct aml *a, const struct aml *inner)
{
	if (inner->overflow)
		a->overflow = true;
	aml_bytes(a, inner->b, inner->n);
}

/* PkgLength counts its own bytes; the shortest form that fits is used. */
static void aml_pkglength(struct aml *a, size_t body)
{
	if (body + 1 < 0x40) {
		aml_byte(a, (uint8_t)(body + 1));
		return;
	}
	unsigned extra = body + 2 < 0x1000 ? 1 : body + 3 < 0x100000 ? 2 : 3;
	size_t total = body + 1 + extra;
	aml_byte(a, (uint8_t)((extra << 6) | (total & 0x0f)));
	for (unsigned i = 0; i < extra; i++)
		aml_byte(a, (uint8_t)(total >> (4 + 8 * i)));
}

static void aml_namestring(struct aml *a, const char *name)
{
	if (name[0] == '\\') {
		aml_byte(a, AML_ROOT);
		name++;
	}
	aml_bytes(a, name, 4);
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO);
	} else if (v == 1) {
		aml_byte(a, AML_ONE);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE);
		aml_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD);
		aml_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD);
		aml_le(a, v, 8);
	}
}

static unsigned hex_digit(char c)
{
	return (unsigned)(c <= '9' ? c - '0' : c - 'A' + 10);
}

void aml_eisaid(struct aml *a, const char id[7])
{
	/* Three letters of five bits each, then four hex digits; big-endian. */
	uint16_t vendor = (uint16_t)(((id[0] - 0x40) << 10) | ((id[1] - 0x40) << 5) | (id[2] - 0x40));
	uint16_t product = (uint16_t)(hex_digit(id[3]) << 12 | hex_digit(id[4]) << 8 |
				      hex_digit(id[5]) << 4 | hex_digit(id[6]));
	aml_byte(a, AML_DWORD);
	aml_byte(a, (uint8_t)(vendor >> 8));
	aml_byte(a, (uint8_t)vendor);
	aml_byte(a, (uint8_t)(product >> 8));
	aml_byte(a, (uint8_t)product);
}

void aml_name(struct aml *a, const char *name, const struct aml *value)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, name);
	aml_append(a, value);
}

void aml_name_integer(struct aml *a, const char *name, uint64_t v)
{
	struct aml value = { .n = 0 };
	aml_integer(&value, v);
	aml_name(a, name, &value);
}

static void aml_named_block(struct aml *a, const char *name, const struct aml *body)
{
	struct aml inner = { .n = 0 };
	aml_namestring(&inner, name);
	aml_append(&inner, body);
	aml_pkglength(a, inner.n);
	aml_append(a, &inner);
}

void aml_scope(struct aml *a, const char *name, const struct aml *body)
{
	aml_byte(a, AML_SCOPE_OP);
	aml_named_block(a, name, body);
}

void aml_device(struct aml *a, const char *name, const struct aml *body)
{
	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	aml_named_block(a, name, body);
}

void aml_buffer(struct aml *a, const struct aml *data)
{
	struct aml inner = { .n = 0 };
	aml_integer(&inner, data->n);
	aml_append(&inner, data);
	aml_byte(a, AML_BUFFER_OP);
	aml_pkglength(a, inner.n);
	aml_append(a, &inner);
}

void aml_package(struct aml *a, unsigned n, const struct aml *elements)
{
	struct aml inner = { .n = 0 };
	if (n > 0xff) { /* NumElements is one byte; larger needs VarPackage */
		a->overflow = true;
		return;
	}
	aml_byte(&inner, (uint8_t)n);
	aml_append(&inner, elements);
	aml_byte(a, AML_PACKAGE_OP);
	aml_pkglength(a, inner.n);
	aml_append(a, &inner);
}

void aml_package_integers(struct aml *a, const uint64_t *v, unsigned n)
{
	struct aml elements = { .n = 0 };
	for (unsigned i = 0; i < n; i++)
		aml_integer(&elements, v[i]);
	aml_package(a, n, &elements);
}

#define RES_WORD_ADDRESS  0x88
#define RES_DWORD_ADDRESS 0x87
#define RES_IO            0x47
#define RES_END           0x79
#define RES_TYPE_MEMORY   0
#define RES_TYPE_IO       1
#define RES_TYPE_BUS      2
#define RES_MIN_MAX_FIXED 0x0c /* producer, positive decode, min and max fixed */

static void res_word_address(struct aml *t, uint8_t type, uint8_t type_flags,
			     uint16_t min, uint16_t max)
{
	aml_byte(t, RES_WORD_ADDRESS);
	aml_le(t, 13, 2);
	aml_byte(t, type);
	aml_byte(t, RES_MIN_MAX_FIXED);
	aml_byte(t, type_flags);
	aml_le(t, 0, 2);         /* granularity */
	aml_le(t, min, 2);
	aml_le(t, max, 2);
	aml_le(t, 0, 2);         /* translation offset */
	aml_le(t, (uint16_t)(max - min + 1), 2);
}

void aml_res_bus_numbers(struct aml *t, uint16_t first, uint16_t last)
{
	res_word_address(t, RES_TYPE_BUS, 0, first, last);
}

void aml_res_io_window(struct aml *t, uint16_t min, uint16_t max)
{
	res_word_address(t, RES_TYPE_IO, 0x03 /* ISA and non-ISA ranges */, min, max);
}

void aml_res_io_fixed(struct aml *t, uint16_t base, uint8_t len)
{
	aml_byte(t, RES_IO);
	aml_byte(t, 0x01);       /* 16-bit decode */
	aml_le(t, base, 2);
	aml_le(t, base, 2);
	aml_byte(t, 0x01);       /* alignment */
	aml_byte(t, len);
}

void aml_res_mem32_window(struct aml *t, uint32_t min, uint32_t max)
{
	aml_byte(t, RES_DWORD_ADDRESS);
	aml_le(t, 23, 2);
	aml_byte(t, RES_TYPE_MEMORY);
	aml_byte(t, RES_MIN_MAX_FIXED);
	aml_byte(t, 0x01);       /* read-write, not cacheable */
	aml_le(t, 0, 4);         /* granularity */
	aml_le(t, min, 4);
	aml_le(t, max, 4);
	aml_le(t, 0, 4);         /* translation offset */
	aml_le(t, max - min + 1, 4);
}

void aml_res_end(struct aml *t)
{
	aml_byte(t, RES_END);
	aml_byte(t, 0);          /* checksum 0: "treat as correct" */
}

/*
 * Small helpers used everywhere: array sizes, checked arithmetic, and the
 * parsers for sizes and integers that every front end needs. Parsers never
 * accept trailing garbage, signs or overflow: a user's typo is an error,
 * never a silent default.
 */
#ifndef SHOJI_BASE_UTIL_H
#define SHOJI_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

/* True when [off, off+len) lies inside [0, limit) without overflowing. */
static inline bool range_within(uint64_t off, uint64_t len, uint64_t limit)
{
	return off <= limit && len <= limit - off;
}

/*
 * Little-endian values of `n` bytes (1..8) in byte arrays: guest memory,
 * config space, image headers. Bytes past the eighth store as zero.
 */
static inline uint64_t le_load(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void le_store(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = i < 8 ? (uint8_t)(v >> (8 * i)) : 0;
}

static inline uint64_t align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

static inline uint64_t align_down(uint64_t v, uint64_t align)
{
	return v & ~(align - 1);
}

/*
 * Parses "512M", "2G", "1048576", "64K" (binary units, optional trailing
 * 'B' or 'iB'). Returns false on anything else, including overflow.
 */
bool parse_size(const char *text, uint64_t *out);

/* Parses a decimal unsigned integer in [min, max]; no sign, no suffix. */
bool parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* Formats a byte count as "2 GiB", "512 MiB" or "12345 B" into buf. */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/* CLOCK_MONOTONIC in milliseconds: for deadlines and back-offs, never
 * for wall-clock times. */
long monotonic_ms(void);
/* The same clock in nanoseconds. */
uint64_t monotonic_ns(void);

#endif

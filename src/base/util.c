/* Implementation of base/util.h. */
#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool parse_digits(const char *text, const char **end, uint64_t *out)
{
	if (!isdigit((unsigned char)*text))
		return false;
	char *e;
	errno = 0;
	unsigned long long v = strtoull(text, &e, 10);
	if (errno == ERANGE)
		return false;
	*end = e;
	*out = v;
	return true;
}

bool parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *end;
	uint64_t v;
	if (!text || !parse_digits(text, &end, &v) || *end != '\0')
		return false;
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int unit_shift(const char *suffix)
{
	static const struct {
		char letter;
		int shift;
	} units[] = { { 'K', 10 }, { 'M', 20 }, { 'G', 30 }, { 'T', 40 } };

	if (*suffix == '\0' || strcmp(suffix, "B") == 0)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (toupper((unsigned char)suffix[0]) != units[i].letter)
			continue;
		const char *rest = suffix + 1;
		if (*rest == '\0' || strcmp(rest, "B") == 0 || strcmp(rest, "iB") == 0)
			return units[i].shift;
	}
	return -1;
}

bool parse_size(const char *text, uint64_t *out)
{
	const char *end;
	uint64_t v;
	if (!text || !parse_digits(text, &end, &v))
		return false;
	int shift = unit_shift(end);
	if (shift < 0)
		return false;
	if (shift > 0 && v > (UINT64_MAX >> shift))
		return false;
	*out = v << shift;
	return true;
}

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const names[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	size_t i = 0;
	while (i + 1 < ARRAY_SIZE(names) && bytes >= 1024 && bytes % 1024 == 0) {
		bytes /= 1024;
		i++;
	}
	snprintf(buf, len, "%llu %s", (unsigned long long)bytes, names[i]);
	return buf;
}

long monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

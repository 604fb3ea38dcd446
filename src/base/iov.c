/* Scatter-gather helpers (see iov.h). */
#include "base/iov.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The part of segment `seg` after *off, at most `left` bytes; *off is consumed. */
static size_t seg_part(const struct iovec *seg, size_t *off, size_t left)
{
	if (*off >= seg->iov_len) {
		*off -= seg->iov_len;
		return 0;
	}
	size_t k = seg->iov_len - *off;
	return k < left ? k : left;
}

/* Copies between the list (from byte `off`) and buf; to_buf says which way. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, uint8_t *buf, size_t len,
		       bool to_buf)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		size_t skip = off;
		size_t k = seg_part(&iov[i], &off, len - done);
		if (k == 0)
			continue;
		uint8_t *seg = (uint8_t *)iov[i].iov_base + skip;
		if (to_buf)
			memcpy(buf + done, seg, k);
		else
			memcpy(seg, buf + done, k);
		done += k;
		off = 0;
	}
	return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len)
{
	return iov_copy(iov, n, off, dst, len, true);
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len)
{
	return iov_copy(iov, n, off, (uint8_t *)src, len, false); /* only read from */
}

unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len, struct iovec *out)
{
	unsigned count = 0;
	for (unsigned i = 0; i < n && len > 0; i++) {
		size_t skip = off;
		size_t k = seg_part(&iov[i], &off, len);
		if (k == 0)
			continue;
		out[count++] = (struct iovec){ (uint8_t *)iov[i].iov_base + skip, k };
		len -= k;
		off = 0;
	}
	return count;
}

void iov_skip(struct iovec **iov, unsigned *n, size_t skip)
{
	while (*n > 0 && skip >= (*iov)->iov_len) {
		skip -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n > 0 && skip > 0) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + skip;
		(*iov)->iov_len -= skip;
	}
}

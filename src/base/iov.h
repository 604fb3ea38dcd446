/*
 * Scatter-gather lists (struct iovec) as the virtio devices see a chain:
 * copies in and out at a byte offset, and windows over part of one. Every
 * function stops at the end of the list: a short copy returns the bytes it
 * did, it never reads or writes past a segment.
 */
#ifndef SHOJI_BASE_IOV_H
#define SHOJI_BASE_IOV_H

#include <stddef.h>
#include <sys/uio.h>

/* Copies up to len bytes from byte `off` of the list into dst; the count copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len);

/* Copies up to len bytes from src into the list at byte `off`; the count copied. */
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len);

/*
 * Fills out (room for n entries) with the segments covering bytes
 * [off, off + len) of the list, as far as the list reaches; the count.
 */
unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len, struct iovec *out);

/* Drops `skip` bytes from the front of *iov, in place (the list's first
 * segment may be shortened); stops at the end of the list. */
void iov_skip(struct iovec **iov, unsigned *n, size_t skip);

#endif

/*
 * The "bool + message buffer" error convention (docs/hacking.md): a
 * function that checks user input returns false and leaves one line in a
 * caller's buffer saying what is wrong and what would be accepted. This is
 * the one helper that writes that line, so parsers can end a check with
 * `return errbuf_fail(err, errlen, "...", ...)`.
 */
#ifndef SHOJI_BASE_ERRBUF_H
#define SHOJI_BASE_ERRBUF_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Formats the message into err (truncated to errlen bytes, always
 * terminated when errlen > 0) and returns false. errno is left as it was,
 * so "%m" still names the caller's error.
 */
bool errbuf_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif

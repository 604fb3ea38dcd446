/*
 * key=value lists, the sub-options of a command-line flag: shoji-vmm's
 * --disk path=P,readonly=on, --net user,mac=M, --vsock and --jail, and
 * `shoji vm create --disk`. One splitter, so that the VMM and the CLI accept
 * the same text and refuse a mistake with the same words.
 *
 * Items are separated by commas, without quoting: no value can contain a
 * comma. Each key is one table entry with the function that takes its
 * value. Every mistake is refused in one line that starts with the flag's
 * name and says what would be accepted: an empty item (a doubled or
 * trailing comma), an item without '=', an unknown key (the line lists the
 * known ones), a key given twice that may not repeat, an empty value, a
 * value longer than KVOPT_VALUE_MAX, a required key missing.
 */
#ifndef SHOJI_BASE_KVOPT_H
#define SHOJI_BASE_KVOPT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define KVOPT_VALUE_MAX PATH_MAX   /* values are mostly paths */
#define KVOPT_MAX_KEYS  16

struct kvopt_key {
	const char *name;
	/* Takes a non-empty, NUL-terminated value; false with one line in err. */
	bool (*set)(void *ctx, const char *value, char *err, size_t errlen);
	bool repeat;     /* may be given more than once (backing-dir=, hostfwd=) */
	bool required;
	/* Its value is free text: an item without '=' right after it is most
	 * likely the rest of a value that held a comma, and the message says so. */
	bool free_text;
};

struct kvopt_spec {
	const char *option;              /* "--disk": every message starts with it */
	const char *syntax;              /* the accepted form, shown after "use " */
	const struct kvopt_key *keys;
	size_t nkeys;                    /* at most KVOPT_MAX_KEYS */
};

/*
 * Hands each item of `text` to its key's set(ctx, value) in the order
 * given. Returns false at the first mistake, with one line in err; ctx
 * may then hold some of the values, so callers parse into a scratch copy.
 */
bool kvopt_parse(const struct kvopt_spec *spec, const char *text, void *ctx, char *err,
		 size_t errlen);

/*
 * The key named by the `len` bytes at `name`, or NULL. For a parser of
 * another syntax over the same kind of key table (shojid's configuration
 * file: one "key = value" a line).
 */
const struct kvopt_key *kvopt_find(const struct kvopt_spec *spec, const char *name, size_t len);

/* "path, readonly, serial": the known keys into buf, for an unknown-key message. */
const char *kvopt_key_list(const struct kvopt_spec *spec, char *buf, size_t len);

/*
 * "on" or "off" into *out. Anything else ("yes", "ON", "1") is refused as
 * "OPTION KEY=VALUE: use KEY=on or KEY=off".
 */
bool kvopt_on_off(const char *option, const char *key, const char *value, bool *out, char *err,
		  size_t errlen);

#endif

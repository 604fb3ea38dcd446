/*
 * Parser for --vsock cid=N,socket=PATH: both keys required, each once;
 * every mistake is one line naming the key and value and what is accepted.
 */
#include "vmm/vsock-option.h"

#include <stdlib.h>
#include <string.h>

#include "base/errbuf.h"
#include "base/util.h"

#define VSOCK_SYNTAX "cid=N,socket=PATH"

static bool key_cid(struct vsock_option *v, const char *value, char *err, size_t errlen)
{
	uint64_t n;
	if (!parse_uint(value, VSOCK_CID_MIN, VSOCK_CID_MAX, &n))
		return errbuf_fail(err, errlen, "--vsock cid=%s: use a number from %u to %u (0-2 are reserved)",
			           value, VSOCK_CID_MIN, VSOCK_CID_MAX);
	v->cid = (uint32_t)n;
	return true;
}

static bool key_socket(struct vsock_option *v, const char *value, char *err, size_t errlen)
{
	size_t len = strlen(value);
	if (len == 0)
		return errbuf_fail(err, errlen, "--vsock socket=: needs a path");
	if (len > VSOCK_HOST_PATH_MAX)
		return errbuf_fail(err, errlen, "--vsock socket=%.40s...: longer than %d bytes (PATH_<port> "
			           "must fit in a Unix socket address)", value, VSOCK_HOST_PATH_MAX);
	memcpy(v->socket, value, len + 1);
	return true;
}

static const struct {
	const char *key;
	bool (*parse)(struct vsock_option *v, const char *value, char *err, size_t errlen);
} keys[] = {
	{ "cid", key_cid },
	{ "socket", key_socket },
};

/* One key=value item (NUL-terminated, no comma). */
static bool parse_item(struct vsock_option *v, char *item, bool *seen, char *err, size_t errlen)
{
	char *eq = strchr(item, '=');
	if (!eq)
		return errbuf_fail(err, errlen, "--vsock %s: expected key=value (" VSOCK_SYNTAX ")", item);
	*eq = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (strcmp(item, keys[i].key) != 0)
			continue;
		if (seen[i])
			return errbuf_fail(err, errlen, "--vsock: %s= given twice", item);
		seen[i] = true;
		return keys[i].parse(v, eq + 1, err, errlen);
	}
	return errbuf_fail(err, errlen, "--vsock: unknown key '%s' (" VSOCK_SYNTAX ")", item);
}

bool vsock_option_parse(const char *text, struct vsock_option *out, char *err, size_t errlen)
{
	*out = (struct vsock_option){ .enabled = true };
	char *copy = strdup(text);
	if (!copy)
		return errbuf_fail(err, errlen, "--vsock: out of memory");
	bool seen[ARRAY_SIZE(keys)] = { false };
	bool ok = true;
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); ok && item; item = strtok_r(NULL, ",", &save))
		ok = parse_item(out, item, seen, err, errlen);
	free(copy);
	if (ok && !seen[0])
		ok = errbuf_fail(err, errlen, "--vsock %s: cid= is required (" VSOCK_SYNTAX ")", text);
	if (ok && !seen[1])
		ok = errbuf_fail(err, errlen, "--vsock %s: socket= is required (" VSOCK_SYNTAX ")", text);
	return ok;
}

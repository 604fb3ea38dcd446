/*
 * Parser for --vsock cid=N,socket=PATH (split by base/kvopt): both keys
 * required, each once; every mistake is one line naming the key and value
 * and what is accepted.
 */
#include "vmm/vsock-option.h"

#include <string.h>

#include "base/errbuf.h"
#include "base/kvopt.h"
#include "base/util.h"

#define VSOCK_SYNTAX "cid=N,socket=PATH"

static bool key_cid(void *ctx, const char *value, char *err, size_t errlen)
{
	struct vsock_option *v = ctx;
	uint64_t n;
	if (!parse_uint(value, VSOCK_CID_MIN, VSOCK_CID_MAX, &n))
		return errbuf_fail(err, errlen, "--vsock cid=%s: use a number from %u to %u (0-2 are "
				   "reserved)", value, VSOCK_CID_MIN, VSOCK_CID_MAX);
	v->cid = (uint32_t)n;
	return true;
}

static bool key_socket(void *ctx, const char *value, char *err, size_t errlen)
{
	struct vsock_option *v = ctx;
	size_t len = strlen(value);
	if (len > VSOCK_HOST_PATH_MAX)
		return errbuf_fail(err, errlen, "--vsock socket=%.40s...: longer than %d bytes "
				   "(PATH_<port> must fit in a Unix socket address)", value,
				   VSOCK_HOST_PATH_MAX);
	memcpy(v->socket, value, len + 1);
	return true;
}

static const struct kvopt_key vsock_keys[] = {
	{ .name = "cid", .set = key_cid, .required = true },
	{ .name = "socket", .set = key_socket, .required = true },
};

static const struct kvopt_spec vsock_spec = {
	.option = "--vsock",
	.syntax = VSOCK_SYNTAX,
	.keys = vsock_keys,
	.nkeys = sizeof(vsock_keys) / sizeof(vsock_keys[0]),
};

bool vsock_option_parse(const char *text, struct vsock_option *out, char *err, size_t errlen)
{
	struct vsock_option v = { .enabled = true };
	if (!kvopt_parse(&vsock_spec, text, &v, err, errlen))
		return false;
	*out = v;
	return true;
}

/*
 * Parser for --vsock cid=N,socket=PATH (split by base/kvopt): both keys
 * required, each once; every mistake is one line naming the key and value
 * and what is accepted. At its end, the vsock device kind (vmm/devices.h):
 * the virtio-vsock device and its host side on Unix sockets (vmm/vsock-host.c).
 */
#include "vmm/vsock-option.h"

#include <stdlib.h>
#include <string.h>

#include "base/errbuf.h"
#include "base/kvopt.h"
#include "base/util.h"
#include "dev/virtio-vsock.h"
#include "vmm/devices.h"
#include "vmm/exit.h"
#include "vmm/sandbox.h"
#include "vmm/virtio-host.h"

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
	struct vsock_option v = { 0 };
	if (!kvopt_parse(&vsock_spec, text, &v, err, errlen))
		return false;
	*out = v;
	return true;
}

static bool vsock_parse(const char *value, unsigned index, void *out, char *err, size_t errlen)
{
	(void)index;
	return vsock_option_parse(value, out, err, errlen);
}

struct vsock_device {
	struct vsock_host *host;
	struct virtio_vsock *dev;
};

static int vsock_create(const struct vmm_device_env *env, const void *opts, unsigned n, void **state)
{
	(void)n;
	const struct vsock_option *v = opts;
	struct vsock_device *d = calloc(1, sizeof(*d));
	*state = d;
	if (!d)
		return VMM_EXIT_FAILURE;
	d->host = vsock_host_create(v->socket, env->io);
	if (!d->host)
		return VMM_EXIT_USAGE; /* a path that is taken or not writable: the user's to fix */
	struct vsock_backend be = vsock_host_backend(d->host);
	d->dev = virtio_vsock_create(v->cid, &be);
	return d->dev && virtio_host_add(env->virtio, &virtio_vsock_ops, d->dev) &&
			       vsock_host_start(d->host, d->dev)
		       ? 0
		       : VMM_EXIT_FAILURE;
}

static void vsock_detach(void *state)
{
	struct vsock_device *d = state;
	if (d)
		vsock_host_detach_io(d->host); /* its watches went with the I/O thread */
}

static void vsock_destroy(void *state)
{
	struct vsock_device *d = state;
	if (!d)
		return;
	virtio_vsock_destroy(d->dev);  /* host programs see EOF */
	vsock_host_destroy(d->host);   /* after the device: it names host connections */
	free(d);
}

/* Unix sockets to and from host programs; the jail keeps the socket's directory. */
static void vsock_needs(const void *opts, unsigned n, struct vmm_device_needs *needs)
{
	(void)n;
	const struct vsock_option *v = opts;
	needs->sandbox |= SANDBOX_VSOCK;
	needs->socket = v->socket;
}

const struct vmm_device_kind vsock_device = {
	.option = "vsock",
	.has_value = true,
	.usage = "  --vsock cid=N,socket=PATH\n"
		 "                        a virtio-vsock device, guest CID N (3 or more): host\n"
		 "                        programs reach guest port P by writing \"CONNECT P\\n\"\n"
		 "                        to the Unix socket PATH; the guest reaches PATH_P\n",
	.parse = vsock_parse,
	.create = vsock_create,
	.detach = vsock_detach,
	.destroy = vsock_destroy,
	.needs = vsock_needs,
};

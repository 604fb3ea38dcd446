/* Definition to shoji-vmm options (see vmm-args.h). */
#include "daemon/vmm-args.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool vm_paths_make(const char *run_dir, const char *name, struct vm_paths *p)
{
	size_t n = strlen(run_dir) + strlen("/vms/") + strlen(name);
	if (n + strlen("/vsock.sock_4294967295") > VM_SOCKET_PATH_MAX)
		return false;
	memcpy(p->dir, run_dir, strlen(run_dir) + 1);
	strcat(p->dir, "/vms/");
	strcat(p->dir, name);
	snprintf(p->console, sizeof(p->console), "%s/console.sock", p->dir);
	snprintf(p->api, sizeof(p->api), "%s/api.sock", p->dir);
	snprintf(p->vsock, sizeof(p->vsock), "%s/vsock.sock", p->dir);
	snprintf(p->status, sizeof(p->status), "%s/exit-status", p->dir);
	snprintf(p->state, sizeof(p->state), "%s/state.json", p->dir);
	return true;
}

static bool arg(struct vmm_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool arg(struct vmm_argv *a, const char *fmt, ...)
{
	if (a->argc >= VMM_ARGV_MAX)
		return false;
	va_list ap;
	va_start(ap, fmt);
	size_t room = sizeof(a->buf) - a->used;
	int n = vsnprintf(a->buf + a->used, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		return false;
	a->argv[a->argc++] = a->buf + a->used;
	a->argv[a->argc] = NULL;
	a->used += (size_t)n + 1;
	return true;
}

static bool net_arg(struct vmm_argv *a, const struct vmdef_net *n)
{
	char v[1024];
	size_t len;
	if (n->tap)
		len = (size_t)snprintf(v, sizeof(v), "tap=%s", n->tap_name);
	else
		len = (size_t)snprintf(v, sizeof(v), "user");
	for (unsigned i = 0; i < n->nhostfwd && len < sizeof(v); i++)
		len += (size_t)snprintf(v + len, sizeof(v) - len, ",hostfwd=%s", n->hostfwd[i]);
	if (n->host_loopback && len < sizeof(v))
		len += (size_t)snprintf(v + len, sizeof(v) - len, ",host-loopback=on");
	if (n->mac[0] && len < sizeof(v))
		len += (size_t)snprintf(v + len, sizeof(v) - len, ",mac=%s", n->mac);
	return len < sizeof(v) && arg(a, "--net") && arg(a, "%s", v);
}

/* path=...,format=...[,readonly=on][,direct=on][,serial=S][,aio=MODE][,backing-dir=DIR]... */
static bool disk_arg(struct vmm_argv *a, const struct vmdef_disk *disk,
		     const char *const *image_dirs)
{
	char v[8192];
	size_t len = (size_t)snprintf(v, sizeof(v), "path=%s,format=%s%s%s", disk->path,
				      disk->qcow2 ? "qcow2" : "raw",
				      disk->readonly ? ",readonly=on" : "",
				      disk->direct ? ",direct=on" : "");
	if (disk->serial[0] && len < sizeof(v))
		len += (size_t)snprintf(v + len, sizeof(v) - len, ",serial=%s", disk->serial);
	if (disk->aio[0] && len < sizeof(v))
		len += (size_t)snprintf(v + len, sizeof(v) - len, ",aio=%s", disk->aio);
	for (const char *const *dir = image_dirs; dir && *dir && len < sizeof(v); dir++)
		len += (size_t)snprintf(v + len, sizeof(v) - len, ",backing-dir=%s", *dir);
	if (!image_dirs && disk->backing_dir[0] && len < sizeof(v))
		len += (size_t)snprintf(v + len, sizeof(v) - len, ",backing-dir=%s", disk->backing_dir);
	return len < sizeof(v) && arg(a, "--disk") && arg(a, "%s", v);
}

bool vmm_argv_build(const char *vmm, const struct vmdef *d, const struct vm_paths *p,
		    const char *const *image_dirs, uint32_t jail_id, struct vmm_argv *a)
{
	a->argc = 0;
	a->used = 0;
	bool ok = arg(a, "%s", vmm) && arg(a, "--kernel") && arg(a, "%s", d->kernel) &&
		  arg(a, "--cmdline") && arg(a, "%s", d->cmdline) && arg(a, "--cpus") &&
		  arg(a, "%u", d->cpus) && arg(a, "--memory") &&
		  arg(a, "%lluM", (unsigned long long)(d->memory >> 20)) && arg(a, "--serial") &&
		  arg(a, "socket=%s", p->console) && arg(a, "--api-socket") && arg(a, "%s", p->api);
	if (ok && d->initrd[0])
		ok = arg(a, "--initrd") && arg(a, "%s", d->initrd);
	for (unsigned i = 0; ok && i < d->ndisks; i++)
		ok = disk_arg(a, &d->disks[i], image_dirs);
	for (unsigned i = 0; ok && i < d->nnets; i++)
		ok = net_arg(a, &d->nets[i]);
	if (ok && d->vsock_cid)
		ok = arg(a, "--vsock") && arg(a, "cid=%u,socket=%s", d->vsock_cid, p->vsock);
	if (ok && d->rng)
		ok = arg(a, "--rng");
	if (ok && jail_id)
		ok = arg(a, "--jail") && arg(a, "uid=%u,gid=%u", jail_id, jail_id);
	return ok;
}

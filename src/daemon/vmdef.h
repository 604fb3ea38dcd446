/*
 * VM definitions: what one VM is allowed to have (kernel, memory, vCPUs,
 * and the devices the guest will see), as one JSON file per VM under the
 * state directory that a person can read and edit. Everything is checked
 * here, before a definition is stored or a VMM is started, and every
 * mistake is one line naming the file, the line and the key.
 *
 * A device that is not in the definition does not exist for the guest: the
 * daemon turns exactly these fields into shoji-vmm options (vmm-args.c).
 */
#ifndef SHOJI_DAEMON_VMDEF_H
#define SHOJI_DAEMON_VMDEF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#define VMDEF_NAME_MAX     32
#define VMDEF_NAME_RULE    "use 1-32 of a-z, 0-9, '-' and '_', starting with a letter or digit"
#define VMDEF_CMDLINE_MAX  2048
#define VMDEF_MAX_DISKS    8
#define VMDEF_MAX_NETS     8
#define VMDEF_MAX_HOSTFWD  8
#define VMDEF_HOSTFWD_MAX  64
#define VMDEF_MAX_CPUS     254
#define VMDEF_MIN_MEMORY   (32ull << 20)
#define VMDEF_MAX_MEMORY   (1ull << 40)

enum vm_role { VM_ROLE_CLIENT, VM_ROLE_SERVICE };

#define VMDEF_SERIAL_MAX   20    /* what virtio-blk's GET_ID returns */

/* One disk; each field becomes a key of shoji-vmm --disk. */
struct vmdef_disk {
	char path[PATH_MAX];
	bool qcow2;
	bool readonly;
	bool direct;              /* O_DIRECT: past the host's page cache */
	char serial[VMDEF_SERIAL_MAX + 1];   /* "" when not given */
	char aio[sizeof("io_uring")];        /* auto, threads, io_uring; "" when not given */
	/* Set by the daemon, never read from a definition: the one directory
	 * this disk's backing files may lie in when shojid has no --image-dir
	 * (an image VM's overlay: its master image's folder). */
	char backing_dir[PATH_MAX];
};

struct vmdef_net {
	bool tap;                 /* else user-mode */
	char tap_name[16];        /* IFNAMSIZ */
	unsigned nhostfwd;
	char hostfwd[VMDEF_MAX_HOSTFWD][VMDEF_HOSTFWD_MAX];
	bool host_loopback;       /* user-mode: 10.0.2.2 reaches the host's 127.0.0.1 */
	char mac[18];             /* "" when not given */
};

struct vmdef {
	char name[VMDEF_NAME_MAX + 1];
	enum vm_role role;
	char image[PATH_MAX];     /* a shoji-img build bundle's prefix OUT; "" when none */
	char kernel[PATH_MAX];
	char initrd[PATH_MAX];    /* "" when none */
	char cmdline[VMDEF_CMDLINE_MAX];
	unsigned cpus;
	uint64_t memory;          /* bytes, a whole number of MiB */
	unsigned ndisks;
	struct vmdef_disk disks[VMDEF_MAX_DISKS];
	unsigned nnets;
	struct vmdef_net nets[VMDEF_MAX_NETS];
	unsigned vsock_cid;       /* 0: no vsock device */
	bool rng;
	bool autostart;           /* default: true for service VMs */
	char depends_on[VMDEF_NAME_MAX + 1]; /* "" when none */
};

/*
 * A valid VM name: 1-32 of [a-z0-9_-], starting with a letter or digit.
 * Inline so that shoji checks names by the very same rule without linking
 * the daemon.
 */
static inline bool vmdef_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > VMDEF_NAME_MAX || name[0] == '-' || name[0] == '_')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

/*
 * Parses and checks a definition. `source` names the text in messages (the
 * file's path, or "request"); `expect_name`, when not NULL, is the name the
 * file's name gives, which the "name" key must match. On failure returns
 * false with "SOURCE:LINE: key 'KEY': what is wrong" in err.
 */
bool vmdef_parse(const char *text, const char *source, const char *expect_name,
		 struct vmdef *out, char *err, size_t errlen);

/* The definition as JSON, the form stored on disk and returned by the API. */
json_t *vmdef_to_json(const struct vmdef *d);

const char *vm_role_name(enum vm_role role);

/*
 * The one rule between definitions: a VM may depend only on a service VM
 * that exists. `dep` is the definition d->depends_on names, NULL when no VM
 * has that name (not looked at when d depends on nothing). On failure
 * returns false with "'NAME': what is wrong" in err.
 */
bool vmdef_dependency_ok(const struct vmdef *d, const struct vmdef *dep, char *err, size_t errlen);

#endif

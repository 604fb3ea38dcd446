/*
 * shoji-vmm's command line: parsed and validated before any resource is
 * taken, so a user's mistake costs one line on stderr and exit status 2.
 */
#ifndef SHOJI_VMM_OPTIONS_H
#define SHOJI_VMM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "vmm/disk-option.h"
#include "vmm/jail.h"
#include "vmm/net-option.h"
#include "vmm/vsock-option.h"

#define VMM_DEFAULT_MEMORY   (512ull << 20)
#define VMM_MIN_MEMORY       (32ull << 20)
#define VMM_MAX_MEMORY       (1ull << 40)
#define VMM_DEFAULT_CMDLINE  "console=ttyS0"
#define VMM_MAX_DISKS        8
#define VMM_MAX_NETS         8

enum console_kind {
	CONSOLE_TTY,
	CONSOLE_FILE,
	CONSOLE_SOCKET,
	CONSOLE_OFF,
};

struct console_config {
	enum console_kind kind;
	const char *path; /* file= or socket= */
};

struct vmm_options {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	unsigned cpus;
	uint64_t memory;
	struct console_config serial;
	enum log_level log_level;
	bool seccomp;
	bool rng;
	bool on_panic_pause;
	unsigned ndisks;
	struct disk_option disks[VMM_MAX_DISKS];
	unsigned nnets;
	struct net_option nets[VMM_MAX_NETS];
	struct vsock_option vsock;
	const char *api_socket;   /* --api-socket: the control socket, or NULL */
	struct jail_option jail;  /* --jail */
	bool help;
	bool version;
};

/*
 * Fills `opts` from argv. Returns false with a one-line message in `err`
 * (naming the bad input and what to do) on any mistake.
 */
bool options_parse(int argc, char **argv, struct vmm_options *opts, char *err, size_t errlen);

/* The --help text. */
extern const char options_usage[];

#endif

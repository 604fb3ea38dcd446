/*
 * shoji-vmm's command line: parsed and validated before any resource is
 * taken, so a user's mistake costs one line on stderr and exit status 2.
 */
#ifndef SHOJI_VMM_OPTIONS_H
#define SHOJI_VMM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/log.h"
#include "vmm/devices.h"
#include "vmm/jail.h"

#define VMM_DEFAULT_MEMORY   (512ull << 20)
#define VMM_MIN_MEMORY       (32ull << 20)
#define VMM_MAX_MEMORY       (1ull << 40)
#define VMM_DEFAULT_CMDLINE  "console=ttyS0"

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
	bool on_panic_pause;
	/* Each device kind's values (vmm/devices.h): ndisks and disks[], nnets and nets[], ... */
#define VMM_DEVICE_FIELDS(name, type, most) unsigned n##name##s; type name##s[most];
	VMM_DEVICES(VMM_DEVICE_FIELDS)
#undef VMM_DEVICE_FIELDS
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

/*
 * The --help text: options_usage holds its start, up to the device
 * options; options_print_usage() prints all of it.
 */
extern const char options_usage[];
void options_print_usage(FILE *out);

#endif

/*
 * Command-line parsing for shoji-vmm (see options.h). Each error message
 * names the flag and the value it got, and says what would be accepted.
 */
#include "vmm/options.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errbuf.h"
#include "base/util.h"
#include "hv/acpi.h"

const char options_usage[] =
	"Usage: shoji-vmm --kernel PATH [options]\n"
	"\n"
	"Runs one x86_64 virtual machine on /dev/kvm and exits when it stops.\n"
	"\n"
	"Options:\n"
	"  --kernel PATH         Linux bzImage or ELF vmlinux to boot (required)\n"
	"  --initrd PATH         initial ramdisk\n"
	"  --cmdline STRING      kernel command line (default \"" VMM_DEFAULT_CMDLINE "\")\n"
	"  --cpus N              number of vCPUs, 1 to 254 (default 1)\n"
	"  --memory SIZE         guest RAM, e.g. 512M or 2G; a bare number is MiB\n"
	"                        (default 512M, at least 32M)\n"
	"  --serial MODE         COM1 console: tty (default: this terminal, or stdin/stdout),\n"
	"                        file=PATH, socket=PATH (a Unix socket, mode 0600), off\n";

/* After the device options' lines (vmm/devices.h). */
static const char options_usage_tail[] =
	"  --on-panic exit|pause when the guest kernel panics (pvpanic): exit with\n"
	"                        status 5 (default), or stop the vCPUs and wait for a signal\n"
	"  --api-socket PATH     a control socket (Unix, mode 0600): one JSON request\n"
	"                        per line, {\"op\":\"ping\"} or {\"op\":\"power-button\"}\n"
	"  --log-level LEVEL     error, warn, info (default) or debug\n"
	"  --jail uid=N,gid=M    once set up, run as that user in namespaces of its own,\n"
	"                        its root an empty directory holding only its sockets'\n"
	"                        directories (needs root; shojid uses it for every VM)\n"
	"  --seccomp on|off      system call allowlist (default on; off only for\n"
	"                        debugging tools such as valgrind)\n"
	"  -h, --help            print this help and exit\n"
	"  -V, --version         print the version and exit\n"
	"\n"
	"On a terminal, type Ctrl-a x to stop the VM and Ctrl-a Ctrl-a to send Ctrl-a.\n"
	"\n"
	"Exit status:\n"
	"  0  the guest powered off        3  the guest rebooted\n"
	"  1  the VMM failed               4  a vCPU crashed (triple fault, internal error)\n"
	"  2  bad usage or input file      5  the guest kernel panicked\n"
	"                                  6  stopped by a signal or Ctrl-a x\n";

enum option_id {
	OPT_KERNEL = 1000,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_CPUS,
	OPT_MEMORY,
	OPT_SERIAL,
	OPT_LOG_LEVEL,
	OPT_SECCOMP,
	OPT_API_SOCKET,
	OPT_JAIL,
	OPT_ON_PANIC,
	OPT_DEVICE = 2000, /* + the kind's row in vmm_devices[] */
	OPT_HELP = 'h',
	OPT_VERSION = 'V',
};

/* The machine's own options; options_parse() appends the device kinds'. */
static const struct option machine_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "seccomp", required_argument, NULL, OPT_SECCOMP },
	{ "api-socket", required_argument, NULL, OPT_API_SOCKET },
	{ "on-panic", required_argument, NULL, OPT_ON_PANIC },
	{ "jail", required_argument, NULL, OPT_JAIL },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
};

#define MACHINE_OPTIONS (sizeof(machine_options) / sizeof(machine_options[0]))

void options_print_usage(FILE *out)
{
	fputs(options_usage, out);
	for (unsigned i = 0; i < VMM_NDEVICES; i++)
		fputs(vmm_devices[i].kind->usage, out);
	fputs(options_usage_tail, out);
}

static bool check_input_file(const char *flag, const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (path[0] == '\0')
		return errbuf_fail(err, errlen, "%s needs a file path", flag);
	if (stat(path, &st) < 0)
		return errbuf_fail(err, errlen, "%s %s: %m", flag, path);
	if (!S_ISREG(st.st_mode))
		return errbuf_fail(err, errlen, "%s %s: not a regular file", flag, path);
	if (access(path, R_OK) < 0)
		return errbuf_fail(err, errlen, "%s %s: %m", flag, path);
	return true;
}

static bool parse_memory(const char *text, uint64_t *out, char *err, size_t errlen)
{
	uint64_t bytes, mib;
	if (parse_uint(text, 0, UINT64_MAX >> 20, &mib))
		bytes = mib << 20;   /* a bare number is MiB, as in QEMU and kvmtool */
	else if (!parse_size(text, &bytes))
		return errbuf_fail(err, errlen, "--memory %s: not a size (use e.g. 512M or 2G)", text);
	if (bytes < VMM_MIN_MEMORY)
		return errbuf_fail(err, errlen, "--memory %s: too small, the minimum is 32M", text);
	if (bytes % MiB)
		return errbuf_fail(err, errlen, "--memory %s: must be a whole number of MiB", text);
	long pages = sysconf(_SC_PHYS_PAGES);
	long page_size = sysconf(_SC_PAGESIZE);
	uint64_t host = pages > 0 && page_size > 0 ? (uint64_t)pages * (uint64_t)page_size : VMM_MAX_MEMORY;
	if (bytes > VMM_MAX_MEMORY || bytes > host)
		return errbuf_fail(err, errlen, "--memory %s: more than this host's %llu MiB of RAM", text,
			           (unsigned long long)(host >> 20));
	*out = bytes;
	return true;
}

static bool parse_serial(const char *text, struct console_config *out, char *err, size_t errlen)
{
	if (strcmp(text, "tty") == 0) {
		*out = (struct console_config){ CONSOLE_TTY, NULL };
	} else if (strcmp(text, "off") == 0) {
		*out = (struct console_config){ CONSOLE_OFF, NULL };
	} else if (strncmp(text, "file=", 5) == 0 && text[5]) {
		*out = (struct console_config){ CONSOLE_FILE, text + 5 };
	} else if (strncmp(text, "socket=", 7) == 0 && text[7]) {
		*out = (struct console_config){ CONSOLE_SOCKET, text + 7 };
		if (strlen(out->path) >= 108)
			return errbuf_fail(err, errlen, "--serial %s: socket path longer than 107 bytes", text);
	} else {
		return errbuf_fail(err, errlen, "--serial %s: use tty, off, file=PATH or socket=PATH", text);
	}
	return true;
}

static bool parse_one(int id, const char *arg, struct vmm_options *o, char *err, size_t errlen)
{
	uint64_t n;
	switch (id) {
	case OPT_KERNEL:
		o->kernel = arg;
		return check_input_file("--kernel", arg, err, errlen);
	case OPT_INITRD:
		o->initrd = arg;
		return check_input_file("--initrd", arg, err, errlen);
	case OPT_CMDLINE:
		o->cmdline = arg;
		return true;
	case OPT_CPUS:
		if (!parse_uint(arg, 1, ACPI_MAX_CPUS, &n))
			return errbuf_fail(err, errlen, "--cpus %s: must be a number from 1 to %d", arg, ACPI_MAX_CPUS);
		o->cpus = (unsigned)n;
		return true;
	case OPT_MEMORY:
		return parse_memory(arg, &o->memory, err, errlen);
	case OPT_SERIAL:
		return parse_serial(arg, &o->serial, err, errlen);
	case OPT_LOG_LEVEL:
		if (!log_level_parse(arg, &o->log_level))
			return errbuf_fail(err, errlen, "--log-level %s: use error, warn, info or debug", arg);
		return true;
	case OPT_SECCOMP:
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
			return errbuf_fail(err, errlen, "--seccomp %s: use on or off", arg);
		o->seccomp = strcmp(arg, "on") == 0;
		return true;
	case OPT_API_SOCKET:
		o->api_socket = arg;
		if (!arg[0] || strlen(arg) >= 108)
			return errbuf_fail(err, errlen, "--api-socket %s: give a socket path of 1 to 107 bytes", arg);
		return true;
	case OPT_JAIL:
		return jail_option_parse(arg, &o->jail, err, errlen);
	case OPT_ON_PANIC:
		if (strcmp(arg, "exit") != 0 && strcmp(arg, "pause") != 0)
			return errbuf_fail(err, errlen, "--on-panic %s: use exit or pause", arg);
		o->on_panic_pause = strcmp(arg, "pause") == 0;
		return true;
	case OPT_HELP:
		o->help = true;
		return true;
	case OPT_VERSION:
		o->version = true;
		return true;
	default:
		if (id >= OPT_DEVICE && (unsigned)(id - OPT_DEVICE) < VMM_NDEVICES)
			return vmm_device_parse(&vmm_devices[id - OPT_DEVICE], arg, o, err, errlen);
		return errbuf_fail(err, errlen, "internal error: option %d", id);
	}
}

static const char *option_name(const struct option *long_options, int id)
{
	for (const struct option *opt = long_options; opt->name; opt++)
		if (opt->val == id)
			return opt->name;
	return "?";
}

/*
 * The option getopt_long just refused. glibc says it three ways: optopt is a
 * long option's value (missing argument), a short option's letter (which may
 * sit inside a cluster such as "-xV", so argv cannot name it), or 0 for an
 * unknown long option, which is then the last argument getopt looked at.
 */
static const char *offending_option(const struct option *long_options, char **argv, char *buf,
				    size_t len)
{
	if (optopt >= OPT_KERNEL)
		snprintf(buf, len, "--%s", option_name(long_options, optopt));
	else if (optopt > 0 && optopt < 256)
		snprintf(buf, len, "-%c", optopt);
	else
		return argv[optind - 1];
	return buf;
}

bool options_parse(int argc, char **argv, struct vmm_options *o, char *err, size_t errlen)
{
	*o = (struct vmm_options){
		.cmdline = VMM_DEFAULT_CMDLINE,
		.cpus = 1,
		.memory = VMM_DEFAULT_MEMORY,
		.serial = { CONSOLE_TTY, NULL },
		.log_level = LOG_LEVEL_INFO,
		.seccomp = true,
	};
	bool seen[OPT_ON_PANIC - OPT_KERNEL + 1] /* device options count themselves */ = { false };

	struct option long_options[MACHINE_OPTIONS + VMM_NDEVICES + 1];
	memcpy(long_options, machine_options, sizeof(machine_options));
	for (unsigned i = 0; i < VMM_NDEVICES; i++) {
		const struct vmm_device_kind *k = vmm_devices[i].kind;
		long_options[MACHINE_OPTIONS + i] = (struct option){
			k->option, k->has_value ? required_argument : no_argument, NULL, OPT_DEVICE + (int)i,
		};
	}
	long_options[MACHINE_OPTIONS + VMM_NDEVICES] = (struct option){ NULL, 0, NULL, 0 };

	opterr = 0; /* our messages, not getopt's */
	optind = 0; /* 0, not 1: also forgets glibc's position inside an old argv */
	int id;
	while ((id = getopt_long(argc, argv, ":hV", long_options, NULL)) != -1) {
		char name[64];
		const char *bad = offending_option(long_options, argv, name, sizeof(name));
		if (id == '?')
			return errbuf_fail(err, errlen, "unknown option '%s' (see shoji-vmm --help)", bad);
		if (id == ':')
			return errbuf_fail(err, errlen, "option '%s' needs a value (see shoji-vmm --help)", bad);
		if (id >= OPT_KERNEL && id <= OPT_ON_PANIC) {
			if (seen[id - OPT_KERNEL])
				return errbuf_fail(err, errlen, "--%s given twice; give it once",
						   option_name(long_options, id));
			seen[id - OPT_KERNEL] = true;
		}
		if (!parse_one(id, optarg, o, err, errlen))
			return false;
	}
	if (optind < argc)
		return errbuf_fail(err, errlen, "unexpected argument '%s' (options start with --; see shoji-vmm --help)",
			           argv[optind]);
	if (!o->help && !o->version && !o->kernel)
		return errbuf_fail(err, errlen, "--kernel is required (see shoji-vmm --help)");
	return true;
}

/*
 * shojid: the host daemon. Holds the VM definitions, runs one shoji-vmm
 * per VM under supervision, and serves the API on a Unix socket. It needs
 * root (or whoever may use /dev/kvm), its state directory and its run
 * directory. Under systemd (packaging/systemd/shojid.service) it reports
 * readiness over $NOTIFY_SOCKET (notify.h); it needs no systemd, so it also
 * runs from a busybox initramfs.
 *
 * Its settings: daemon/config.h (file, environment, flags).
 *
 * SIGTERM or SIGINT stops the daemon and leaves the VMs running: the next
 * shojid re-adopts them (supervisor.h).
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "daemon/api.h"
#include "daemon/config.h"
#include "daemon/disk-check.h"
#include "daemon/events.h"
#include "daemon/notify.h"
#include "daemon/supervisor.h"
#include "daemon/vmlog.h"

static const char usage[] =
	"Usage: shojid [options]\n"
	"\n"
	"The shoji host daemon: keeps the VM definitions, runs and supervises one\n"
	"shoji-vmm per VM, and serves the API (JSON over HTTP) on a Unix socket.\n"
	"\n"
	"Options (each but --config may also be a line of the configuration file,\n"
	"as in `stop-timeout = 60`; an option given here overrides the file):\n"
	"  --config PATH         the configuration file; default /etc/shoji/shojid.conf\n"
	"                        (none there: the defaults)\n"
	"  --state-dir DIR       definitions (DIR/vms/NAME.json) and console logs\n"
	"                        (DIR/logs); default /var/lib/shoji, or $SHOJI_STATE_DIR\n"
	"  --run-dir DIR         per-VM sockets and pids (DIR/vms/NAME, mode 0700);\n"
	"                        default /run/shoji, or $SHOJI_RUN_DIR\n"
	"  --socket PATH         the API socket (mode 0600); default RUN-DIR/shojid.sock,\n"
	"                        or $SHOJI_SOCKET\n"
	"  --vmm PATH            the VMM to run; default shoji-vmm next to shojid\n"
	"  --jail on|off         run each VMM jailed as a user of its own, in namespaces\n"
	"                        of its own (default on as root; off otherwise)\n"
	"  --image-dir DIR       backing files of VMs' disks must lie in DIR (up to 4\n"
	"                        times); without it, in each disk's own directory\n"
	"                        (an image VM's overlay: its master image's folder)\n"
	"  --stop-timeout SECS   how long `stop` waits before it kills the VMM\n"
	"                        (default 30); a VM whose agent answers is asked to\n"
	"                        shut down first, the power button follows at half\n"
	"                        of it\n"
	"  --start-timeout SECS  how long a VMM may take to answer on its control\n"
	"                        socket before it is killed as a failed start\n"
	"                        (default 30)\n"
	"  --backoff-ms MS       first restart delay of a failed service VM, doubling\n"
	"                        up to 60 s (default 1000)\n"
	"  --vmm-log-max SIZE    bound of each VMM's log (STATE-DIR/logs/NAME.vmm.log,\n"
	"                        rotated to NAME.vmm.log.1 while the VM runs), e.g.\n"
	"                        512K or 8M; at least 4K (default 8M)\n"
	"  --log-level LEVEL     error, warn, info (default) or debug\n"
	"  -h, --help            print this help and exit\n"
	"  -V, --version         print the version and exit\n"
	"\n"
	"SIGTERM and SIGINT stop the daemon and leave the VMs running; a new shojid\n"
	"re-adopts them. Exit status: 0 after a signal, 1 on failure, 2 bad usage.\n";

struct options {
	struct shojid_config cfg;
	const char *config;      /* --config PATH, or NULL: CONFIG_DEFAULT_PATH */
	bool help, version;
};

static bool fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static bool fail(const char *fmt, ...)
{
	char msg[PATH_MAX + 512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s", msg);
	return false;
}

/* A flag of config_spec (getopt's value KEY_BASE + its index) and its value. */
#define KEY_BASE 256
struct flag {
	const struct kvopt_key *key;
	const char *value;
};

/*
 * The command line is read whole first, because --config, wherever it
 * stands, names the file whose settings the other flags override:
 * defaults, file, environment, then the flags in their order.
 */
static bool parse_options(int argc, char **argv, struct options *o)
{
	struct option longs[KVOPT_MAX_KEYS + 4];
	size_t nk = config_spec.nkeys;
	for (size_t i = 0; i < nk; i++)
		longs[i] = (struct option){ config_spec.keys[i].name, required_argument, NULL,
					    KEY_BASE + (int)i };
	longs[nk] = (struct option){ "config", required_argument, NULL, 'c' };
	longs[nk + 1] = (struct option){ "help", no_argument, NULL, 'h' };
	longs[nk + 2] = (struct option){ "version", no_argument, NULL, 'V' };
	longs[nk + 3] = (struct option){ NULL, 0, NULL, 0 };

	struct flag *flags = calloc((size_t)argc + 1, sizeof(*flags));
	if (!flags)
		return fail("out of memory");
	size_t nflags = 0;
	bool ok = true;
	*o = (struct options){ 0 };
	opterr = 0;
	int c;
	while (ok && (c = getopt_long(argc, argv, ":hV", longs, NULL)) != -1) {
		if (c >= KEY_BASE && c < KEY_BASE + (int)nk)
			flags[nflags++] = (struct flag){ &config_spec.keys[c - KEY_BASE], optarg };
		else if (c == 'c')
			o->config = optarg;
		else if (c == 'h')
			o->help = true;
		else if (c == 'V')
			o->version = true;
		else if (c == ':')
			ok = fail("option '%s' needs a value (see shojid --help)", argv[optind - 1]);
		else
			ok = fail("unknown option '%s' (see shojid --help)", argv[optind - 1]);
	}
	if (ok && optind < argc)
		ok = fail("unexpected argument '%s' (see shojid --help)", argv[optind]);
	char err[PATH_MAX + 512];
	config_defaults(&o->cfg);
	if (ok && !o->help && !o->version) {
		/* A missing default file means the defaults; a file named with --config must be there. */
		ok = config_load(&o->cfg, o->config ? o->config : CONFIG_DEFAULT_PATH, o->config != NULL,
				 err, sizeof(err)) && config_env(&o->cfg, err, sizeof(err));
		for (size_t i = 0; ok && i < nflags; i++)
			ok = config_flag(&o->cfg, flags[i].key, flags[i].value, err, sizeof(err));
		if (!ok)
			fail("%s", err);
	}
	free(flags);
	return ok;
}

/* shoji-vmm in the directory of this very binary (build/ or /usr/bin alike). */
static bool default_vmm(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return false;
	self[n] = '\0';
	return (size_t)snprintf(out, len, "%s/shoji-vmm", dirname(self)) < len;
}

static int run(const struct options *o, const char *vmm, const char *socket_path)
{
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	/* Blocked in every thread; only sigwait below takes them. */
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN); /* a client that went away is a failed write, not our end */

	const struct shojid_config *c = &o->cfg;
	const char *image_dirs[DISK_CHECK_MAX_DIRS + 1] = { NULL }; /* NULL-terminated */
	for (unsigned i = 0; i < c->nimage_dirs; i++)
		image_dirs[i] = c->image_dirs[i];
	struct sup_config cfg = { c->state_dir, c->run_dir, vmm, (int)c->stop_timeout_s * 1000,
				  (int)c->start_timeout_s * 1000, (int)c->backoff_ms, VMLOG_DEFAULT_MAX,
				  c->vmm_log_max, c->nimage_dirs ? image_dirs : NULL, c->jail };
	struct events *events = events_create();
	struct sup *sup = events ? sup_create(&cfg, events) : NULL;
	int fd = sup ? api_listen(socket_path) : -1;
	struct api *api = fd >= 0 ? api_start(fd, sup, events) : NULL;
	int code = 1;
	if (api && sup_start(sup)) {
		log_info("serving %s (state %s, VMM %s)", socket_path, c->state_dir, vmm);
		if (!c->jail)
			log_warn("VMMs run without a jail (%s)", geteuid() == 0 ? "--jail off"
									 : "not root");
		/* The socket listens and the VMs are adopted: clients may come (systemd's Type=notify). */
		notify_send("READY=1");
		int sig = 0;
		sigwait(&stop, &sig);
		log_info("received %s: stopping; the VMs keep running", strsignal(sig));
		notify_send("STOPPING=1");
		code = 0;
	}
	api_stop(api);
	if (fd >= 0)
		unlink(socket_path);
	sup_destroy(sup);
	events_destroy(events);
	return code;
}

int main(int argc, char **argv)
{
	log_init("shojid", LOG_LEVEL_INFO);
	/*
	 * log_init has seen whether our stderr is the journal. Nothing shojid
	 * starts writes there: a VMM's stderr is a pipe to its keeper, which
	 * copies it into NAME.vmm.log (spawn.h). log.c would find that the
	 * variable does not name the pipe, but a child should not be told it
	 * talks to the journal at all: a program that trusts the variable
	 * without that check would put "<3>" prefixes into the log file.
	 */
	unsetenv("JOURNAL_STREAM");
	static struct options o; /* paths of PATH_MAX bytes: not on the stack */
	if (!parse_options(argc, argv, &o))
		return 2;
	if (o.help) {
		fputs(usage, stdout);
		return 0;
	}
	if (o.version) {
		printf("shojid %s\n", SHOJI_VERSION);
		return 0;
	}
	log_set_level(o.cfg.level);
	/* A long-running daemon's lines need a time, unless the journal adds it. */
	log_set_timestamps(true);
	char vmm[PATH_MAX], sock[PATH_MAX];
	if (!o.cfg.vmm[0] && !default_vmm(vmm, sizeof(vmm))) {
		log_error("cannot find shoji-vmm next to shojid; give --vmm PATH");
		return 2;
	}
	if (o.cfg.vmm[0])
		snprintf(vmm, sizeof(vmm), "%s", o.cfg.vmm);
	if (access(vmm, X_OK) != 0) {
		log_error("--vmm %s: %m", vmm);
		return 2;
	}
	if (o.cfg.socket[0])
		snprintf(sock, sizeof(sock), "%s", o.cfg.socket);
	else if ((size_t)snprintf(sock, sizeof(sock), "%s/shojid.sock", o.cfg.run_dir) >= sizeof(sock)) {
		log_error("--run-dir %s: too long for the socket's path; give --socket PATH", o.cfg.run_dir);
		return 2;
	}
	return run(&o, vmm, sock);
}

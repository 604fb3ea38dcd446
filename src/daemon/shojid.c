/*
 * shojid: the host daemon. Holds the VM definitions, runs one shoji-vmm
 * per VM under supervision, and serves the API on a Unix socket. It needs
 * root (or whoever may use /dev/kvm), its state directory and its run
 * directory. Under systemd (packaging/systemd/shojid.service) it reports
 * readiness over $NOTIFY_SOCKET (notify.h); it needs no systemd, so it also
 * runs from a busybox initramfs.
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
	"Options:\n"
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
	const char *state_dir;
	const char *run_dir;
	const char *socket;
	const char *vmm;
	const char *image_dirs[DISK_CHECK_MAX_DIRS + 1]; /* NULL-terminated */
	unsigned nimage_dirs;
	bool jail;
	unsigned stop_timeout_s;
	unsigned start_timeout_s;
	unsigned backoff_ms;
	uint64_t vmm_log_max;
	enum log_level level;
	bool help, version;
};

static bool fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static bool fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s", msg);
	return false;
}

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v && v[0] ? v : fallback;
}

static bool add_image_dir(struct options *o, const char *dir)
{
	struct stat st;
	if (o->nimage_dirs == DISK_CHECK_MAX_DIRS)
		return fail("--image-dir %s: at most %d image directories", dir, DISK_CHECK_MAX_DIRS);
	if (stat(dir, &st) < 0)
		return fail("--image-dir %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail("--image-dir %s: not a directory", dir);
	o->image_dirs[o->nimage_dirs++] = dir;
	return true;
}

static bool parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{ "state-dir", required_argument, NULL, 's' }, { "run-dir", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 'S' }, { "vmm", required_argument, NULL, 'm' },
		{ "stop-timeout", required_argument, NULL, 't' }, { "backoff-ms", required_argument, NULL, 'b' },
		{ "start-timeout", required_argument, NULL, 'T' },
		{ "image-dir", required_argument, NULL, 'i' },
		{ "jail", required_argument, NULL, 'j' },
		{ "vmm-log-max", required_argument, NULL, 'L' },
		{ "log-level", required_argument, NULL, 'l' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
	};
	*o = (struct options){ .state_dir = env_or("SHOJI_STATE_DIR", "/var/lib/shoji"),
			       .run_dir = env_or("SHOJI_RUN_DIR", "/run/shoji"),
			       .socket = getenv("SHOJI_SOCKET"), .stop_timeout_s = 30,
			       .start_timeout_s = 30, .backoff_ms = 1000,
			       .vmm_log_max = VMM_LOG_DEFAULT_MAX, .level = LOG_LEVEL_INFO,
			       .jail = geteuid() == 0 };
	opterr = 0;
	int c;
	uint64_t n;
	while ((c = getopt_long(argc, argv, ":hV", longs, NULL)) != -1) {
		switch (c) {
		case 's': o->state_dir = optarg; break;
		case 'r': o->run_dir = optarg; break;
		case 'S': o->socket = optarg; break;
		case 'm': o->vmm = optarg; break;
		case 'i':
			if (!add_image_dir(o, optarg))
				return false;
			break;
		case 'j':
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
				return fail("--jail %s: use on or off", optarg);
			o->jail = strcmp(optarg, "on") == 0;
			if (o->jail && geteuid() != 0)
				return fail("--jail on needs root (each VMM changes user and namespaces)");
			break;
		case 't':
			if (!parse_uint(optarg, 1, 3600, &n))
				return fail("--stop-timeout %s: must be a number of seconds from 1 to 3600", optarg);
			o->stop_timeout_s = (unsigned)n;
			break;
		case 'T':
			if (!parse_uint(optarg, 1, 3600, &n))
				return fail("--start-timeout %s: must be a number of seconds from 1 to 3600", optarg);
			o->start_timeout_s = (unsigned)n;
			break;
		case 'b':
			if (!parse_uint(optarg, 10, 60000, &n))
				return fail("--backoff-ms %s: must be a number from 10 to 60000", optarg);
			o->backoff_ms = (unsigned)n;
			break;
		case 'L':
			if (!parse_size(optarg, &n) || n < 4 * KiB || n > 64 * GiB)
				return fail("--vmm-log-max %s: must be a size from 4K to 64G, e.g. 8M", optarg);
			o->vmm_log_max = n;
			break;
		case 'l':
			if (!log_level_parse(optarg, &o->level))
				return fail("--log-level %s: use error, warn, info or debug", optarg);
			break;
		case 'h': o->help = true; break;
		case 'V': o->version = true; break;
		case ':': return fail("option '%s' needs a value (see shojid --help)", argv[optind - 1]);
		default: return fail("unknown option '%s' (see shojid --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail("unexpected argument '%s' (see shojid --help)", argv[optind]);
	return true;
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

	struct sup_config cfg = { o->state_dir, o->run_dir, vmm, (int)o->stop_timeout_s * 1000,
				  (int)o->start_timeout_s * 1000, (int)o->backoff_ms, VMLOG_DEFAULT_MAX,
				  o->vmm_log_max, o->nimage_dirs ? o->image_dirs : NULL, o->jail };
	struct events *events = events_create();
	struct sup *sup = events ? sup_create(&cfg, events) : NULL;
	int fd = sup ? api_listen(socket_path) : -1;
	struct api *api = fd >= 0 ? api_start(fd, sup, events) : NULL;
	int code = 1;
	if (api && sup_start(sup)) {
		log_info("serving %s (state %s, VMM %s)", socket_path, o->state_dir, vmm);
		if (!o->jail)
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
	struct options o;
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
	log_set_level(o.level);
	/* A long-running daemon's lines need a time, unless the journal adds it. */
	log_set_timestamps(true);
	char vmm[PATH_MAX], sock[PATH_MAX];
	if (!o.vmm && !default_vmm(vmm, sizeof(vmm))) {
		log_error("cannot find shoji-vmm next to shojid; give --vmm PATH");
		return 2;
	}
	if (o.vmm)
		snprintf(vmm, sizeof(vmm), "%s", o.vmm);
	if (access(vmm, X_OK) != 0) {
		log_error("--vmm %s: %m", vmm);
		return 2;
	}
	snprintf(sock, sizeof(sock), "%s", o.socket ? o.socket : "");
	if (!o.socket)
		snprintf(sock, sizeof(sock), "%s/shojid.sock", o.run_dir);
	return run(&o, vmm, sock);
}

/*
 * shoji-agent: the guest agent (docs/agent.md, docs/shoji-agent.8). It
 * listens on vsock port 1027, answers only the host (CID 2), and serves each
 * connection, one operation, in a thread of its own, at most AGENT_MAX_OPS
 * at once. Everything the host sends is checked by base/agent-proto.c; a
 * bad message gets an error reply and a closed connection, never a crash.
 *
 * Static and unsanitized (meson.build): the same binary runs in a busybox
 * initramfs and in a Debian guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/vm_sockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "base/log.h"
#include "base/ratelimit.h"

static const char usage[] =
	"Usage: shoji-agent [OPTION]...\n"
	"The shoji guest agent: runs commands, copies files and reports on the\n"
	"guest for the host, over virtio-vsock (docs/agent.md). Runs as root.\n"
	"\n"
	"  --port N              the vsock port to listen on (default 1027); only\n"
	"                        the host (CID 2) is answered\n"
	"  --listen-unix PATH    for tests: listen on a Unix socket at PATH instead\n"
	"                        of vsock, answer any peer, and only pretend to\n"
	"                        power off or set the clock\n"
	"  -h, --help            print this help and exit\n"
	"  -V, --version         print the version and exit\n"
	"\n"
	"Messages go to stderr. Exit status: 1 if it cannot listen, 2 bad usage.\n";

struct options {
	unsigned port;
	const char *unix_path;
};

static atomic_uint active;   /* connections being served */
/*
 * Connections refused before they are served (not the host, too many) can
 * come from any process in the guest, at will: their lines are limited.
 */
static struct ratelimit refused_limit = RATELIMIT_INIT(60, 10);

/* ---- replies ---- */

bool agent_reply_ok(struct agent_conn *c, json_t *obj)
{
	json_t *o = json_pack("{s:b}", "ok", 1);
	if (obj)
		json_object_update(o, obj);
	json_decref(obj);
	int r = agent_frame_send_json(c->fd, AGENT_REPLY, o, AGENT_IO_MS);
	json_decref(o);
	if (r < 0)
		log_warn("connection %u: reply not sent: %s", c->id, strerror(-r));
	return r == 0;
}

bool agent_reply_error(struct agent_conn *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("connection %u: %s", c->id, msg);
	/* json_string refuses invalid UTF-8 (a file name can be anything). */
	json_t *o = json_pack("{s:s%}", "error", msg, strnlen(msg, sizeof(msg)));
	if (!o)
		o = json_pack("{s:s}", "error", "(message is not UTF-8)");
	agent_frame_send_json(c->fd, AGENT_REPLY, o, AGENT_IO_MS);
	json_decref(o);
	return false;
}

/* ---- one connection ---- */

static agent_op_fn *const op_table[] = {
	[AGENT_OP_PING] = agent_op_ping,
	[AGENT_OP_INFO] = agent_op_info,
	[AGENT_OP_EXEC] = agent_op_exec,
	[AGENT_OP_READ_FILE] = agent_op_read_file,
	[AGENT_OP_WRITE_FILE] = agent_op_write_file,
	[AGENT_OP_SHUTDOWN] = agent_op_shutdown,
	[AGENT_OP_SET_TIME] = agent_op_set_time,
};

static void serve_request(struct agent_conn *c)
{
	unsigned type;
	size_t len;
	int r = agent_frame_recv(c->fd, &type, c->buf, &len, AGENT_IO_MS);
	if (r == -ENODATA)
		return; /* connected and left: nothing to answer */
	if (r < 0) {
		agent_reply_error(c, "no request: %s", r == -EPROTO ? "malformed frame" : strerror(-r));
		return;
	}
	if (type != AGENT_REQUEST) {
		agent_reply_error(c, "expected a REQUEST frame first, not %s", agent_frame_type_name(type));
		return;
	}
	struct agent_request req;
	char err[256];
	if (!agent_request_parse(c->buf, len, &req, err, sizeof(err))) {
		agent_reply_error(c, "%s", err);
		return;
	}
	log_debug("connection %u: %s", c->id, agent_op_name(req.op));
	op_table[req.op](c, &req);
	agent_request_free(&req);
}

static void *serve(void *arg)
{
	struct agent_conn *c = arg;
	serve_request(c);
	close(c->fd);
	enum agent_after after = c->after;
	bool test_mode = c->test_mode;
	free(c);
	atomic_fetch_sub(&active, 1);
	if (after != AFTER_NOTHING)
		agent_power(after, test_mode);
	return NULL;
}

/* Starts a thread for fd, or closes it unanswered when AGENT_MAX_OPS run. */
static void dispatch(int fd, unsigned id, bool test_mode)
{
	if (atomic_fetch_add(&active, 1) >= AGENT_MAX_OPS) {
		atomic_fetch_sub(&active, 1);
		log_limited(&refused_limit, LOG_LEVEL_WARN, "connection %u: %d operations already running, closed",
			    id, AGENT_MAX_OPS);
		close(fd);
		return;
	}
	struct agent_conn *c = calloc(1, sizeof(*c));
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (c) {
		*c = (struct agent_conn){ .fd = fd, .id = id, .test_mode = test_mode };
		if (pthread_create(&th, &attr, serve, c) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
	}
	pthread_attr_destroy(&attr);
	log_warn("connection %u: no thread for it, closed", id);
	free(c);
	close(fd);
	atomic_fetch_sub(&active, 1);
}

/* ---- listening ---- */

static int listen_vsock(unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0) {
		log_error("cannot listen on vsock port %u: %m", port);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	log_info("listening on vsock port %u", port);
	return fd;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path)) {
		log_error("%s: socket path too long", path);
		return -1;
	}
	strcpy(a.sun_path, path);
	struct stat st;
	/* A socket left by an earlier run; anything else there stays. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 64) < 0) {
		log_error("cannot listen on %s: %m", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	log_info("listening on %s (test mode)", path);
	return fd;
}

/* Accepts forever; a peer other than the host is closed unanswered. */
static void accept_loop(int lfd, bool vsock)
{
	for (unsigned id = 1;; id++) {
		struct sockaddr_vm peer = { 0 };
		socklen_t plen = sizeof(peer);
		int fd = accept4(lfd, vsock ? (struct sockaddr *)&peer : NULL, vsock ? &plen : NULL,
				 SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED) {
				/* out of fds or memory: wait for connections to end */
				log_warn("accept: %m");
				nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
			}
			continue;
		}
		if (vsock && peer.svm_cid != VMADDR_CID_HOST) {
			log_limited(&refused_limit, LOG_LEVEL_WARN, "connection %u from CID %u, not the host: closed",
				    id, peer.svm_cid);
			close(fd);
			continue;
		}
		dispatch(fd, id, !vsock);
	}
}

/* ---- start ---- */

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "listen-unix", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		char *end;
		unsigned long v;
		switch (ch) {
		case 'p':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || optarg[0] == '-' || v == 0 || v >= UINT_MAX) {
				fprintf(stderr, "shoji-agent: --port %s: expected 1 to %u\n", optarg, UINT_MAX - 1);
				return 2;
			}
			o->port = (unsigned)v;
			break;
		case 'u': o->unix_path = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("shoji-agent %s\n", SHOJI_VERSION); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shoji-agent: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return -1;
}

/* fds 0-2 open, so no pipe of an exec lands on them and is dup2'ed away. */
static void hold_std_fds(void)
{
	int fd;
	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
}

int main(int argc, char **argv)
{
	struct options o = { .port = AGENT_VSOCK_PORT };
	int status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	hold_std_fds();
	log_init("shoji-agent", LOG_LEVEL_INFO);
	/* A host that leaves mid-reply is -EPIPE for that connection only. */
	signal(SIGPIPE, SIG_IGN);
	/* Inherited as ignored, children would reap themselves and each exec's
	 * waitpid would find nothing to wait for. */
	signal(SIGCHLD, SIG_DFL);
	int lfd = o.unix_path ? listen_unix(o.unix_path) : listen_vsock(o.port);
	if (lfd < 0)
		return 1;
	accept_loop(lfd, !o.unix_path);
}

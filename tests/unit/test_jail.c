/*
 * The VMM's jail (src/vmm/jail.c), entered for real in a forked child as a
 * jailed VMM would enter it, then probed from inside: each thing a
 * compromised VMM must not reach is tried and must be denied (issue 16,
 * item 6; docs/security.md lists the same). Needs root (CI runs as root);
 * skipped with the reason otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"
#include "vmm/jail.h"
#include "vmm/sandbox.h"

#define JAIL_UID 4000000001u
#define JAIL_GID 4000000002u

static char kept[64];       /* the "run directory", owned by the jail's user */
static char hidden[128];    /* a host file outside it */
static char host_name[256];

/* One probe: a name for the report and whether it held. */
struct probe {
	const char *what;
	bool ok;
};

static int report_fd = -1; /* the child writes failed probe names here */

static void expect(const char *what, bool ok)
{
	if (ok)
		return;
	char line[256];
	int n = snprintf(line, sizeof(line), "%s (errno %d)\n", what, errno);
	if (write(report_fd, line, (size_t)n) < 0)
		_exit(99);
}

static bool denied(int r, int err)
{
	return r < 0 && errno == err;
}

/* Inside the jail: everything below must be out of reach. */
static void probe_inside(bool host_network)
{
	expect("runs as the jail's user", getuid() == JAIL_UID && geteuid() == JAIL_UID);
	expect("runs as the jail's group", getgid() == JAIL_GID && getegid() == JAIL_GID);
	gid_t groups[4];
	expect("no supplementary groups", getgroups(4, groups) == 0);
	expect("host files are gone", denied(open(hidden, O_RDONLY), ENOENT));
	expect("/etc/passwd is gone", denied(open("/etc/passwd", O_RDONLY), ENOENT));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* A sanitizer build keeps /proc for the sanitizers (vmm/jail.c), read-only. */
	expect("/proc is read-only", denied(mkdir("/proc/x", 0700), EROFS) ||
					     denied(mkdir("/proc/x", 0700), ENOENT) ||
					     denied(mkdir("/proc/x", 0700), EACCES));
#else
	expect("/proc is gone", denied(open("/proc/1/environ", O_RDONLY), ENOENT));
#endif
	expect("/dev is gone", denied(open("/dev/kvm", O_RDWR), ENOENT));
	expect("/dev/mem is gone", denied(open("/dev/mem", O_RDONLY), ENOENT));
	expect("nothing can be created in the root", denied(mkdir("/x", 0700), EROFS));
	expect("cannot become root", denied(setuid(0), EPERM));
	expect("cannot mount", denied(mount("none", "/", "tmpfs", 0, NULL), EPERM));
	expect("cannot chroot out", denied(chroot("/"), EPERM));
	expect("cannot signal the parent (root)", denied(kill(getppid(), 0), EPERM));
	expect("cannot signal init", denied(kill(1, 0), EPERM));
	struct rlimit core;
	expect("no core dumps", getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_max == 0);
	expect("not dumpable (no ptrace by the same user)", prctl(PR_GET_DUMPABLE) == 0);
	char name[256] = "";
	gethostname(name, sizeof(name));
	expect("a host name of its own", strcmp(name, "shoji-vmm") == 0);
	/* The kept directory is there, at its own path, and writable. */
	char f[128];
	snprintf(f, sizeof(f), "%s/made-inside", kept);
	int fd = open(f, O_WRONLY | O_CREAT | O_EXCL, 0600);
	expect("its run directory is kept and writable", fd >= 0);
	if (fd >= 0)
		close(fd);
	/* No network at all unless user-mode networking needs the host's. */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = htons(9),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int r = s < 0 ? -1 : connect(s, (struct sockaddr *)&lo, sizeof(lo));
	if (host_network)
		expect("the host's loopback is reachable with host networking",
		       r < 0 && errno == ECONNREFUSED);
	else
		expect("no network without host networking", r < 0 && errno == ENETUNREACH);
	if (s >= 0)
		close(s);
	/* The VMM's seccomp filter still goes in on top. */
	expect("the seccomp filter enters after the jail", sandbox_enter_with(0));
}

/* Runs a jailed child; returns what it reported (empty: every probe held). */
static char *run_jailed(bool host_network)
{
	static char buf[4096];
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		report_fd = p[1];
		struct jail_option j = { .enabled = true, .uid = JAIL_UID, .gid = JAIL_GID };
		struct jail_needs needs = { .keep = { kept }, .host_network = host_network };
		if (!jail_enter(&j, &needs)) {
			expect("jail_enter", false);
			_exit(1);
		}
		probe_inside(host_network);
		_exit(0);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while ((r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(p[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("jailed child ended with status %#x; it reported:\n%s", status, buf);
	return buf;
}

static void test_jail_denies(void **state)
{
	(void)state;
	const char *failed = run_jailed(false);
	if (failed[0])
		fail_msg("inside the jail:\n%s", failed);
	/* What it made inside is on the host, and the host is unchanged. */
	char f[128];
	snprintf(f, sizeof(f), "%s/made-inside", kept);
	struct stat st;
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal(st.st_uid, JAIL_UID);
	unlink(f);
	char name[256];
	gethostname(name, sizeof(name));
	assert_string_equal(name, host_name);
	assert_int_equal(access(hidden, R_OK), 0);
}

static void test_jail_host_network(void **state)
{
	(void)state;
	const char *failed = run_jailed(true);
	if (failed[0])
		fail_msg("inside the jail (host network):\n%s", failed);
	char f[128];
	snprintf(f, sizeof(f), "%s/made-inside", kept);
	unlink(f);
}

static void test_option(void **state)
{
	(void)state;
	struct jail_option j;
	char err[256];
	assert_true(jail_option_parse("uid=1000,gid=1001", &j, err, sizeof(err)));
	assert_true(j.enabled);
	assert_int_equal(j.uid, 1000);
	assert_int_equal(j.gid, 1001);
	const char *bad[] = { "uid=0,gid=1", "uid=1,gid=0", "uid=1", "gid=1", "uid=1,gid=1,uid=2",
			      "user=1,gid=1", "uid=x,gid=1", "uid=4294967295,gid=1", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (jail_option_parse(bad[i], &j, err, sizeof(err)))
			fail_msg("--jail %s was accepted", bad[i]);
		assert_non_null(strstr(err, "--jail"));
		assert_null(strchr(err, '\n'));
	}
}

static int setup(void **state)
{
	(void)state;
	snprintf(kept, sizeof(kept), "/tmp/shoji-jail-XXXXXX");
	if (!mkdtemp(kept) || chown(kept, JAIL_UID, JAIL_GID) < 0)
		return -1;
	snprintf(hidden, sizeof(hidden), "%s.hidden", kept);
	int fd = open(hidden, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	close(fd);
	gethostname(host_name, sizeof(host_name));
	log_init("test-jail", LOG_LEVEL_ERROR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(hidden);
	return rmdir(kept);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("SKIP: the jail needs root (namespaces, another user)\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_option),
		cmocka_unit_test(test_jail_denies),
		cmocka_unit_test(test_jail_host_network),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

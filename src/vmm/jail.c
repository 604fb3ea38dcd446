/* Implementation of vmm/jail.h. */
#include "vmm/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/errbuf.h"
#include "base/kvopt.h"
#include "base/log.h"
#include "base/util.h"

/* Where the new root is assembled: any directory will do, since the
 * mount is private to our namespace and what we keep was cloned before;
 * /dev exists on every host with /dev/kvm (an initramfs included). */
#define JAIL_BUILD_DIR "/dev"
#define JAIL_RESOLV_CONF "/etc/resolv.conf"

static bool parse_id(const char *key, const char *v, unsigned *out, char *err, size_t errlen)
{
	uint64_t n;
	if (!parse_uint(v, 1, UINT32_MAX - 1, &n))
		return errbuf_fail(err, errlen, "--jail %s=%s: must be a number from 1 to 4294967294 "
				   "(the jailed VMM never runs as root)", key, v);
	*out = (unsigned)n;
	return true;
}

/* uid_t and gid_t are both unsigned int on Linux, so parse_id fills either. */
static bool key_uid(void *ctx, const char *value, char *err, size_t errlen)
{
	return parse_id("uid", value, &((struct jail_option *)ctx)->uid, err, errlen);
}

static bool key_gid(void *ctx, const char *value, char *err, size_t errlen)
{
	return parse_id("gid", value, &((struct jail_option *)ctx)->gid, err, errlen);
}

static const struct kvopt_key jail_keys[] = {
	{ .name = "uid", .set = key_uid, .required = true },
	{ .name = "gid", .set = key_gid, .required = true },
};

static const struct kvopt_spec jail_spec = {
	.option = "--jail",
	.syntax = "--jail uid=N,gid=M",
	.keys = jail_keys,
	.nkeys = sizeof(jail_keys) / sizeof(jail_keys[0]),
};

bool jail_option_parse(const char *text, struct jail_option *out, char *err, size_t errlen)
{
	struct jail_option j = { .enabled = true };
	if (!kvopt_parse(&jail_spec, text, &j, err, errlen))
		return false;
	*out = j;
	return true;
}

static bool step_failed(const char *what, const char *path)
{
	log_error("jail: %s%s%s: %s", what, path ? " " : "", path ? path : "", strerror(errno));
	return false;
}

/* mkdir -p of `path` (absolute) below `root`. */
static bool make_path(const char *root, const char *path, bool last_is_file)
{
	char full[PATH_MAX];
	if ((size_t)snprintf(full, sizeof(full), "%s%s", root, path) >= sizeof(full)) {
		errno = ENAMETOOLONG;
		return step_failed("cannot keep", path);
	}
	for (char *p = full + strlen(root) + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(full, 0755) < 0 && errno != EEXIST)
			return step_failed("cannot make", full);
		*p = '/';
	}
	if (last_is_file) {
		int fd = open(full, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			return step_failed("cannot make", full);
		close(fd);
	} else if (mkdir(full, 0755) < 0 && errno != EEXIST) {
		return step_failed("cannot make", full);
	}
	return true;
}

/* A host path to keep, cloned as a detached mount before the new root
 * covers it (it may well lie under the directory the root is built on). */
struct kept {
	const char *path;
	int tree;       /* open_tree(OPEN_TREE_CLONE) of path, or -1 */
	bool is_dir;
	bool read_only;
};

static bool clone_path(struct kept *k)
{
	struct stat st;
	if (stat(k->path, &st) < 0)
		return step_failed("cannot keep", k->path);
	k->is_dir = S_ISDIR(st.st_mode);
	k->tree = open_tree(AT_FDCWD, k->path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	return k->tree >= 0 || step_failed("cannot clone", k->path);
}

/* Attaches a cloned path at the same path inside the new root. */
static bool keep_path(const char *root, struct kept *k)
{
	const char *path = k->path;
	if (!make_path(root, path, !k->is_dir))
		return false;
	char target[PATH_MAX];
	snprintf(target, sizeof(target), "%s%s", root, path);
	if (move_mount(k->tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return step_failed("cannot attach", path);
	close(k->tree);
	k->tree = -1;
	bool read_only = k->read_only;
	unsigned long ro = read_only ? MS_RDONLY : 0;
	if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC | ro,
		  NULL) < 0)
		return step_failed("cannot restrict", path);
	return true;
}

/*
 * Makes `root` the root. pivot_root, where the current root allows it;
 * an initramfs root (rootfs) does not, and there the new root is moved
 * over "/" and entered with chroot, as switch_root does: the old root is
 * then underneath a mount and out of reach, and without CAP_SYS_CHROOT
 * there is no getting back out.
 */
static bool switch_root(const char *root)
{
	if (chdir(root) < 0)
		return step_failed("cannot enter", root);
	if (syscall(SYS_pivot_root, ".", ".") == 0) {
		/* The old root is now stacked on top of the new one at "/". */
		if (umount2(".", MNT_DETACH) < 0)
			return step_failed("cannot detach the old root", NULL);
	} else if (errno == EINVAL) {
		if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
			return step_failed("cannot move the new root over", "/");
		if (chroot(".") < 0)
			return step_failed("cannot chroot", root);
	} else {
		return step_failed("pivot_root", root);
	}
	return chdir("/") == 0 || step_failed("cannot enter the new root", NULL);
}

static void close_kept(struct kept *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (k[i].tree >= 0)
			close(k[i].tree);
}

/* The paths to keep, cloned; false (logged) if one cannot be. */
static bool clone_needs(const struct jail_needs *needs, struct kept *k, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(needs->keep); i++)
		if (needs->keep[i])
			k[(*n)++] = (struct kept){ needs->keep[i], -1, false, false };
	if (needs->resolv_conf && access(JAIL_RESOLV_CONF, R_OK) == 0)
		k[(*n)++] = (struct kept){ JAIL_RESOLV_CONF, -1, false, true };
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* The sanitizers read /proc/self/maps at exit (leak checking) and in
	 * reports; a sanitizer build is a test build, and keeps /proc
	 * read-only, as it also runs without the seccomp filter. */
	k[(*n)++] = (struct kept){ "/proc", -1, false, true };
#endif
	for (size_t i = 0; i < *n; i++)
		if (!clone_path(&k[i]))
			return false;
	return true;
}

static bool build_root(const struct jail_needs *needs)
{
	const char *root = JAIL_BUILD_DIR;
	/* Nothing we mount may propagate back to the host's namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return step_failed("cannot make mounts private", NULL);
	struct kept kept[ARRAY_SIZE(needs->keep) + 2];
	size_t n;
	bool ok = clone_needs(needs, kept, &n);
	if (ok && mount("shoji-jail", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
			"size=64k,mode=0755") < 0)
		ok = step_failed("cannot mount a tmpfs on", root);
	for (size_t i = 0; ok && i < n; i++)
		ok = keep_path(root, &kept[i]);
	close_kept(kept, n);
	if (!ok || !switch_root(root))
		return false;
	/* The tmpfs itself read-only: the VMM can create nothing outside
	 * the directories it keeps. */
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return step_failed("cannot make the new root read-only", NULL);
	return true;
}

static bool drop_identity(const struct jail_option *j)
{
	struct rlimit none = { 0, 0 };
	if (setrlimit(RLIMIT_CORE, &none) < 0)
		return step_failed("cannot turn core dumps off", NULL);
	if (setgroups(0, NULL) < 0)
		return step_failed("cannot drop supplementary groups", NULL);
	if (setresgid(j->gid, j->gid, j->gid) < 0)
		return step_failed("cannot change group", NULL);
	if (setresuid(j->uid, j->uid, j->uid) < 0)
		return step_failed("cannot change user", NULL);
	/* A uid change off root clears every capability set; say so if
	 * something (securebits) kept one. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return step_failed("cannot clear ambient capabilities", NULL);
	if (setuid(0) == 0) {
		log_error("jail: could become root again after dropping to uid %u", (unsigned)j->uid);
		return false;
	}
	/* Not dumpable: no ptrace by processes of the same uid, no core. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	return true;
}

/* True when this process has one thread: a namespace or root change
 * would not reach the others, which would keep the host's view. */
static bool single_threaded(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *t = strstr(buf, "\nThreads:");
	return t && strtol(t + strlen("\nThreads:"), NULL, 10) == 1;
}

bool jail_enter(const struct jail_option *j, const struct jail_needs *needs)
{
	if (geteuid() != 0) {
		log_error("jail: --jail needs root (it changes namespaces and user); run shoji-vmm "
			  "as root or without --jail");
		return false;
	}
	if (!single_threaded()) {
		log_error("jail: the process must have one thread when it enters the jail "
			  "(or /proc is not mounted)");
		return false;
	}
	int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
	if (!needs->host_network)
		flags |= CLONE_NEWNET;
	if (unshare(flags) < 0)
		return step_failed("cannot enter new namespaces", NULL);
	if (sethostname("shoji-vmm", strlen("shoji-vmm")) < 0)
		return step_failed("cannot set the host name", NULL);
	if (!build_root(needs) || !drop_identity(j))
		return false;
	log_debug("jail: uid %u gid %u, %s network", (unsigned)j->uid, (unsigned)j->gid,
		  needs->host_network ? "host" : "no");
	return true;
}

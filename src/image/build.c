/*
 * Implementation of image/build.h: the steps in order, each logging its
 * own one-line error, and the temporary directory that makes the bundle
 * appear whole or not at all. What mmdebstrap and mke2fs print goes to a
 * log in that directory; on failure diagnose.c condenses it to one line.
 */
#include "image/build.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "base/errbuf.h"
#include "base/log.h"
#include "base/util.h"
#include "image/bundle.h"
#include "image/diagnose.h"
#include "image/manifest.h"
#include "image/recipe.h"
#include "image/run.h"
#include "image/tmpdir.h"
#include "image/tree.h"

/* What every image gets besides the recipe's kernel and packages: boot
 * with systemd from an initramfs-tools initrd, DHCP and DNS from the host
 * (systemd-networkd, systemd-resolved), the vsock module loaded by kmod,
 * e2fsck for the root file system (in the initrd). */
static const char *const base_packages[] = { "systemd", "systemd-sysv", "udev", "kmod",
	"initramfs-tools", "e2fsprogs", "systemd-resolved", "iproute2", NULL };

/* The suffixes of the bundle, in the order they are moved into place: the
 * manifest last, so a bundle with OUT.json is complete. */
static const char *const suffixes[] = { ".qcow2", ".vmlinuz", ".initrd", ".json" };
#define NFILES 4

#define MIN_FREE (UINT64_C(1) << 30)

struct build {
	const struct build_opts *o;
	struct recipe r;
	char dir[4096];          /* the recipe's folder */
	char outdir[4096];       /* OUT's folder, for messages about space */
	char tmp[4096];          /* OUT.build-XXXXXX */
	char root[4200];         /* tmp/root: the tree */
	char log[4200];          /* tmp/log: the tools' output */
	char file[NFILES][4200]; /* tmp/bundle.qcow2, ... */
	char uuid[37], seed[37];
	char kver[256];
	char *packages;
	int log_fd;
	time_t epoch, started;
	bool epoch_from_env;
};

static bool check_prerequisites(void)
{
	if (geteuid() != 0)
		return log_error("must run as root (mmdebstrap needs it here); run: "
				 "sudo shoji-img build ..."), false;
	static const char *const tools[][2] = {
		{ "mmdebstrap", "mmdebstrap" }, { "mke2fs", "e2fsprogs" },
		{ "dpkg-query", "dpkg" }, { "chroot", "coreutils" } };
	for (size_t i = 0; i < ARRAY_SIZE(tools); i++)
		if (!run_have(tools[i][0]))
			return log_error("%s not found; install it: apt-get install %s", tools[i][0],
					 tools[i][1]), false;
	return true;
}

static bool check_inputs(struct build *b)
{
	char err[512], *copy = strdup(b->o->recipe);
	if (!copy)
		return log_error("out of memory"), false;
	snprintf(b->dir, sizeof(b->dir), "%s", dirname(copy));
	free(copy);
	if (!(copy = strdup(b->o->out)))
		return log_error("out of memory"), false;
	snprintf(b->outdir, sizeof(b->outdir), "%s", dirname(copy));
	free(copy);
	if (!recipe_load(b->o->recipe, &b->r, err, sizeof(err)) ||
	    !recipe_check_files(&b->r, b->dir, err, sizeof(err)))
		return log_error("%s", err), false;
	struct stat st;
	errno = 0;
	if (stat(b->o->agent, &st) < 0 || !S_ISREG(st.st_mode) || access(b->o->agent, X_OK) < 0)
		return log_error("%s: no shoji-agent executable there (%s); build it, or name it with "
				 "--agent PATH", b->o->agent, errno ? strerror(errno) : "not a file"),
		       false;
	for (size_t i = 0; i < NFILES; i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s%s", b->o->out, suffixes[i]);
		if (access(path, F_OK) == 0)
			return log_error("%s exists; remove it or choose another OUT", path), false;
	}
	return true;
}

/* SOURCE_DATE_EPOCH from the environment, else the start of the build
 * (recorded in OUT.json, so the build can be repeated exactly). */
static bool choose_epoch(struct build *b)
{
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	uint64_t v;
	b->started = time(NULL);
	b->epoch_from_env = sde != NULL;
	if (sde && !parse_uint(sde, 0, INT32_MAX, &v))
		return log_error("SOURCE_DATE_EPOCH=%s is not a number of seconds", sde), false;
	b->epoch = sde ? (time_t)v : b->started;
	return bundle_uuid("shoji-img build fs uuid\n", b->r.text, b->uuid) &&
	       bundle_uuid("shoji-img build hash seed\n", b->r.text, b->seed);
}

static bool make_tmp(struct build *b)
{
	struct statvfs sv;
	if (!tmpdir_make(b->o->out, b->tmp, sizeof(b->tmp)))
		return false;
	if (statvfs(b->tmp, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < MIN_FREE) {
		char have[32];
		return log_error("no space: %s has %s free, a build needs at least 1 GiB; free some "
				 "space or build elsewhere", b->tmp,
				 format_size((uint64_t)sv.f_bavail * sv.f_frsize / MiB * MiB, have,
					     sizeof(have))), false;
	}
	snprintf(b->root, sizeof(b->root), "%s/root", b->tmp);
	snprintf(b->log, sizeof(b->log), "%s/log", b->tmp);
	for (size_t i = 0; i < NFILES; i++)
		snprintf(b->file[i], sizeof(b->file[i]), "%s/bundle%s", b->tmp, suffixes[i]);
	b->log_fd = b->o->verbose ? -1 : open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	return b->o->verbose || b->log_fd >= 0 || (log_error("%s: %m", b->log), false);
}

static bool write_early(const char *path, const char *text, mode_t mode)
{
	char dir[4400];
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		mkdir(dir, 0755);
		*p = '/';
	}
	FILE *f = fopen(path, "we");
	bool ok = f && fputs(text, f) >= 0 && fchmod(fileno(f), mode) == 0;
	if (f && fclose(f) != 0)
		ok = false;
	return ok || (log_error("%s: %m", path), false);
}

/* --essential-hook: the fstab and the initrd's fsck hook before the
 * kernel's packages install (tree.h). The hook is a shell command: the
 * path is single-quoted. */
static bool early_hook(struct build *b, char *hook, size_t len)
{
	char early[4300], path[4400];
	snprintf(early, sizeof(early), "%s/early", b->tmp);
	snprintf(path, sizeof(path), "%s/etc/fstab", early);
	if (!write_early(path, tree_fstab, 0644))
		return false;
	snprintf(path, sizeof(path), "%s/etc/initramfs-tools/hooks/shoji-fsck", early);
	if (!write_early(path, tree_fsck_hook, 0755))
		return false;
	size_t n = (size_t)snprintf(hook, len, "--essential-hook=cp -R '");
	for (const char *p = early; *p && n + 8 < len; p++)
		n += (size_t)snprintf(hook + n, len - n, *p == '\'' ? "'\\''" : "%c", *p);
	return (size_t)snprintf(hook + n, len - n, "/.' \"$1/\"") < len - n;
}

static bool mmdebstrap(struct build *b)
{
	char include[8192] = "--include=", sde[64], hook[9000];
	if (!early_hook(b, hook, sizeof(hook)))
		return false;
	for (size_t i = 0; base_packages[i]; i++)
		snprintf(include + strlen(include), sizeof(include) - strlen(include), "%s,",
			 base_packages[i]);
	snprintf(include + strlen(include), sizeof(include) - strlen(include), "%s", b->r.kernel.text);
	for (size_t i = 0; i < b->r.npackages; i++)
		snprintf(include + strlen(include), sizeof(include) - strlen(include), ",%s",
			 b->r.packages[i].text);
	snprintf(sde, sizeof(sde), "SOURCE_DATE_EPOCH=%lld", (long long)b->epoch);
	char *env[] = { sde, NULL };
	/* Documentation, manual pages and translations are left out to keep
	 * master images small (copyright files stay). */
	char *argv[] = { "mmdebstrap", "--mode=root", "--variant=apt", "--format=directory",
			 "--aptopt=Acquire::Languages \"none\"",
			 "--dpkgopt=path-exclude=/usr/share/doc/*",
			 "--dpkgopt=path-include=/usr/share/doc/*/copyright",
			 "--dpkgopt=path-exclude=/usr/share/man/*",
			 "--dpkgopt=path-exclude=/usr/share/info/*",
			 "--dpkgopt=path-exclude=/usr/share/locale/*",
			 "--dpkgopt=path-include=/usr/share/locale/locale.alias",
			 hook, include, b->r.suite.text, b->root, b->r.mirror.text, NULL };
	log_info("mmdebstrap %s: %s and %zu more packages (takes minutes)", b->r.suite.text,
		 b->r.kernel.text, b->r.npackages);
	int rc = run_cmd(argv, env, b->log_fd, NULL);
	if (rc != 0 && !run_stop_signal())
		diagnose_report("mmdebstrap", b->log, &b->r, b->outdir);
	return rc == 0;
}

static bool list_packages(struct build *b)
{
	char admindir[4300];
	snprintf(admindir, sizeof(admindir), "--admindir=%s/var/lib/dpkg", b->root);
	char *argv[] = { "dpkg-query", admindir, "-W", "-f", "${Package}\t${Version}\t${Architecture}\n",
			 NULL };
	return run_cmd(argv, NULL, b->log_fd, &b->packages) == 0 ||
	       (log_error("dpkg-query could not list the image's packages"), false);
}

/* Before mke2fs: a recipe size the tree cannot fit in is the recipe's
 * mistake, and saying so beats mke2fs's "Could not allocate block". */
static bool check_fits(struct build *b)
{
	uint64_t used = tmpdir_usage(b->root);
	if (used + used / 8 + 64 * MiB <= b->r.size)
		return true;
	char need[32];
	format_size(align_up(used + used / 8 + 64 * MiB, 256 * MiB), need, sizeof(need));
	if (!b->r.size_line)
		return log_error("%s: key 'size': the default 2G is too small, the tree needs about %s; "
				 "add 'size = %s'", b->r.file, need, need), false;
	return log_error("%s:%u: key 'size': too small, the tree needs about %s; raise it",
			 b->r.file, b->r.size_line, need), false;
}

static bool make_disk(struct build *b)
{
	char raw[4300];
	snprintf(raw, sizeof(raw), "%s/disk.raw", b->tmp);
	log_info("mke2fs: ext4 of %llu MiB, then qcow2", (unsigned long long)(b->r.size / MiB));
	int rc = bundle_mkfs(b->root, raw, b->r.size, b->uuid, b->seed, b->epoch, b->log_fd);
	if (rc != 0) {
		if (!run_stop_signal())
			diagnose_report("mke2fs", b->log, &b->r, b->outdir);
		return false;
	}
	char script[4300];
	snprintf(script, sizeof(script), "%s/ctimes.debugfs", b->tmp);
	if (!bundle_fix_ctimes(raw, script, b->epoch, b->log_fd))
		return false;
	/* The tree is not needed any more: free its space before the copy. */
	if (!tmpdir_remove(b->root))
		return false;
	rc = bundle_qcow2(raw, b->file[0], b->o->compress);
	unlink(raw);
	if (rc == -ENOSPC)
		diagnose_no_space(b->outdir);
	return rc == 0;
}

static bool write_manifest(struct build *b)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	const char *base = strrchr(b->o->out, '/');
	base = base ? base + 1 : b->o->out;
	char names[3][4200];
	for (int i = 0; i < 3; i++)
		snprintf(names[i], sizeof(names[i]), "%s%s", base, suffixes[i]);
	struct manifest m = {
		.recipe = &b->r, .kernel_version = b->kver, .packages = b->packages,
		.fs_uuid = b->uuid, .source_date_epoch = b->epoch, .epoch_from_env = b->epoch_from_env,
		.started = b->started, .seconds = (double)(now.tv_sec - b->started),
		.files = { { "disk", names[0], b->file[0] }, { "kernel", names[1], b->file[1] },
			   { "initrd", names[2], b->file[2] } } };
	return manifest_write(b->file[3], &m);
}

/* Moves the files into place, never over an existing one; undoes the
 * moves already made when one fails. */
static bool publish(struct build *b)
{
	char to[NFILES][4200];
	for (size_t i = 0; i < NFILES; i++) {
		snprintf(to[i], sizeof(to[i]), "%s%s", b->o->out, suffixes[i]);
		if (renameat2(AT_FDCWD, b->file[i], AT_FDCWD, to[i], RENAME_NOREPLACE) == 0)
			continue;
		log_error("cannot move the result to %s: %m", to[i]);
		while (i-- > 0)
			rename(to[i], b->file[i]);
		return false;
	}
	return true;
}

static bool steps(struct build *b)
{
	return check_prerequisites() && check_inputs(b) && choose_epoch(b) && make_tmp(b) &&
	       mmdebstrap(b) &&
	       tree_customise(b->root, &b->r, b->dir, b->o->agent, b->log_fd) &&
	       bundle_kernel(b->root, b->file[1], b->file[2], b->kver, sizeof(b->kver)) &&
	       list_packages(b) && check_fits(b) &&
	       /* Last before mke2fs: walking the tree (check_fits) sets
		* directories' access times. */
	       tree_clamp_mtimes(b->root, b->epoch) && make_disk(b) && write_manifest(b) &&
	       publish(b);
}

int image_build(const struct build_opts *o)
{
	struct build b = { .o = o, .log_fd = -1 };
	run_catch_signals();
	/* mke2fs lives in /sbin; a sudo'ed or user PATH may lack it. */
	const char *path = getenv("PATH");
	char newpath[8192];
	snprintf(newpath, sizeof(newpath), "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
	setenv("PATH", newpath, 1);
	bool ok = steps(&b);
	/* A signal after publish() is too late to stop: the bundle is whole. */
	int sig = ok ? 0 : run_stop_signal();
	if (b.log_fd >= 0)
		close(b.log_fd);
	if (b.tmp[0])
		tmpdir_remove(b.tmp);
	if (sig && !ok)
		log_error("interrupted by signal %d; nothing was written", sig);
	else if (ok)
		log_info("built %s.qcow2, .vmlinuz, .initrd, .json", o->out);
	free(b.packages);
	recipe_free(&b.r);
	return ok ? 0 : sig ? 128 + sig : 1;
}

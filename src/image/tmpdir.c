/* Implementation of image/tmpdir.h. */
#include "image/tmpdir.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

bool tmpdir_make(const char *out, char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s.build-XXXXXX", out) >= len)
		return log_error("%s: name too long", out), false;
	if (!mkdtemp(buf)) {
		log_error("cannot create %s: %m (does OUT's folder exist and may root write there?)",
			  buf);
		buf[0] = '\0';
		return false;
	}
	return true;
}

/* Lazily unmounts every mount point under path, deepest (last mounted)
 * first. Mount points with spaces are escaped in mountinfo as \040; such
 * a path is never made by mmdebstrap, so it is not decoded. */
static void unmount_under(const char *path)
{
	char real[4096];
	if (!realpath(path, real))
		return;
	size_t n = strlen(real);
	for (int pass = 0; pass < 64; pass++) {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		char line[8192], last[4096] = "";
		while (f && fgets(line, sizeof(line), f)) {
			char mp[4096];
			if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strncmp(mp, real, n) == 0 &&
			    mp[n] == '/')
				snprintf(last, sizeof(last), "%s", mp);
		}
		if (f)
			fclose(f);
		if (!last[0] || umount2(last, MNT_DETACH) < 0)
			return;
	}
}

static int remove_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = type == FTW_DP ? rmdir(p) : unlink(p);
	/* A directory still holding another file system's files (FTW_MOUNT
	 * skipped them) stays, and the error says where. */
	if (r < 0)
		log_error("cannot remove %s: %m", p);
	return r < 0 ? -1 : 0;
}

bool tmpdir_remove(const char *path)
{
	unmount_under(path);
	return nftw(path, remove_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == 0;
}

static uint64_t usage_total;

static int count_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)p;
	(void)type;
	(void)ftw;
	usage_total += (uint64_t)st->st_blocks * 512;
	return 0;
}

uint64_t tmpdir_usage(const char *path)
{
	usage_total = 0;
	nftw(path, count_one, 64, FTW_PHYS | FTW_MOUNT);
	return usage_total;
}

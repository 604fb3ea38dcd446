/* Definition files on disk (see store.h). */
#include "daemon/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void store_def_path(const char *state_dir, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/vms/%s.json", state_dir, name);
}

bool store_mkdirs(const char *dir, unsigned mode)
{
	char buf[PATH_MAX];
	if (strlen(dir) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return false;
	}
	memcpy(buf, dir, strlen(dir) + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST)
			return false;
		*p = '/';
	}
	if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST)
		return false;
	struct stat st;
	return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? true : (errno = ENOTDIR, false);
}

bool store_check_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return false;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory (a symlink?); give a real directory", dir);
		return false;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s: owned by uid %u, not by shojid's uid %u; chown it or choose another",
			 dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return false;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: writable by group or others (mode %03o); chmod go-w it", dir,
			 (unsigned)(st.st_mode & 0777));
		return false;
	}
	return true;
}

char *store_read(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *text = malloc(STORE_FILE_MAX + 1);
	size_t n = 0;
	ssize_t r = 0;
	while (text && n <= STORE_FILE_MAX && (r = read(fd, text + n, STORE_FILE_MAX + 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	if (!text || r < 0 || n > STORE_FILE_MAX) {
		snprintf(err, errlen, "%s: %s", path,
			 !text ? "out of memory" : r < 0 ? strerror(errno) : "larger than 64 KiB");
		free(text);
		return NULL;
	}
	text[n] = '\0';
	return text;
}

bool store_write(const char *path, const char *text, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	size_t len = strlen(text), done = 0;
	ssize_t w = 0;
	while (fd >= 0 && done < len && (w = write(fd, text + done, len - done)) > 0)
		done += (size_t)w;
	bool ok = fd >= 0 && done == len && fsync(fd) == 0;
	int saved = errno;
	if (fd >= 0)
		close(fd);
	if (ok && rename(tmp, path) == 0)
		return true;
	saved = ok ? errno : saved;
	unlink(tmp);
	snprintf(err, errlen, "%s: cannot write: %s", path, strerror(saved));
	return false;
}

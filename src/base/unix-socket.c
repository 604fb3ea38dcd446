/* Implementation of base/unix-socket.h. */
#include "base/unix-socket.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

/* Whether a process answers at addr; the probe never blocks (a full
 * backlog answers EAGAIN, which means someone is there). */
static bool socket_alive(const struct sockaddr_un *addr)
{
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0)
		return true; /* cannot tell: do not remove it */
	int r = connect(probe, (const struct sockaddr *)addr, sizeof(*addr));
	int err = errno;
	close(probe);
	return r == 0 || (err != ECONNREFUSED && err != ENOENT);
}

/* Makes room at path: nothing there, or a stale socket removed. */
static bool clear_stale(const char *what, const char *path, const struct sockaddr_un *addr)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return true;
		log_error("%s %s: %m", what, path);
		return false;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s %s: exists and is not a socket; choose another path", what, path);
		return false;
	}
	if (socket_alive(addr)) {
		log_error("%s %s: another process is listening there; stop it or choose another path",
			  what, path);
		return false;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		log_error("%s %s: cannot remove the old socket: %m", what, path);
		return false;
	}
	return true;
}

int unix_listen(const char *what, const char *path, int backlog, int flags)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("%s %s: longer than %zu bytes; choose a shorter path", what, path,
			  sizeof(addr.sun_path) - 1);
		return -1;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	if (!clear_stale(what, path, &addr))
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	/* fchmod before bind: bind creates the file with the socket inode's
	 * mode, so it is 0600 from the start; chmod after it for file systems
	 * that apply the umask anyway. */
	if (fd < 0 || fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, backlog) < 0) {
		log_error("%s %s: %m", what, path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

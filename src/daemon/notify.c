/* sd_notify without libsystemd (see notify.h): one datagram, no reply. */
#include "daemon/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

bool notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !path[0])
		return true;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	/* A path is absolute; '@' stands for the NUL that starts an abstract name. */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(a.sun_path)) {
		log_warn("NOTIFY_SOCKET %s: not an absolute path or @name that fits a socket address", path);
		return false;
	}
	memcpy(a.sun_path, path, len);
	if (path[0] == '@')
		a.sun_path[0] = '\0';
	/* An abstract name is exactly len bytes: no terminating NUL counts. */
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	size_t n = strlen(state);
	bool ok = fd >= 0 && sendto(fd, state, n, MSG_NOSIGNAL, (struct sockaddr *)&a, alen) == (ssize_t)n;
	if (!ok)
		log_warn("cannot tell the service manager %s at %s: %s", state, path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return ok;
}

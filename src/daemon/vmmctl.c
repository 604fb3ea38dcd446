/* The control-socket client (see vmmctl.h). */
#include "daemon/vmmctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/util.h"

#define CONNECT_RETRY_MS 10

bool ctl_read_line(int fd, char *line, size_t len, long deadline)
{
	size_t n = 0;
	while (n + 1 < len) {
		long left = deadline - monotonic_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		ssize_t r = read(fd, line + n, 1);
		if (r <= 0)
			return false;
		if (line[n] == '\n') {
			line[n] = '\0';
			return true;
		}
		n++;
	}
	return false;
}

int ctl_connect_before(const struct sockaddr_un *addr, long deadline)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	while (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0) {
		int e = errno;
		if ((e != EAGAIN && e != EINTR) || monotonic_ms() + CONNECT_RETRY_MS > deadline) {
			close(fd);
			errno = e == EAGAIN ? ETIMEDOUT : e;
			return -1;
		}
		usleep(CONNECT_RETRY_MS * 1000);
	}
	return fd;
}

bool vmmctl_request(const char *path, const char *op, int timeout_ms, json_t **reply, char *err,
		    size_t errlen)
{
	*reply = NULL;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return false;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	long deadline = monotonic_ms() + timeout_ms;
	int fd = ctl_connect_before(&addr, deadline);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return false;
	}
	char req[64], line[256];
	int n = snprintf(req, sizeof(req), "{\"op\":\"%s\"}\n", op);
	/* The request is far below the socket buffer: a non-blocking send writes it whole. */
	bool ok = send(fd, req, (size_t)n, MSG_NOSIGNAL) == n && ctl_read_line(fd, line, sizeof(line), deadline);
	close(fd);
	if (!ok) {
		snprintf(err, errlen, "%s: no answer to %s", path, op);
		return false;
	}
	json_t *resp = json_loads(line, 0, NULL);
	ok = json_is_true(json_object_get(resp, "ok"));
	if (!ok) {
		snprintf(err, errlen, "%s: %s refused: %.100s", path, op, line);
		json_decref(resp);
		return false;
	}
	*reply = resp;
	return true;
}

bool vmmctl_call(const char *path, const char *op, int timeout_ms, char *err, size_t errlen)
{
	json_t *reply;
	bool ok = vmmctl_request(path, op, timeout_ms, &reply, err, errlen);
	json_decref(reply);
	return ok;
}

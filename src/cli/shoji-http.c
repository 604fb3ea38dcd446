/* The CLI's HTTP/1.x client over AF_UNIX (see shoji-http.h). */
#include "cli/shoji-http.h"

#include "cli/shoji.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int http_connect(const char *socket_path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(socket_path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "shoji: %s: socket path too long\n", socket_path);
		return -1;
	}
	memcpy(a.sun_path, socket_path, strlen(socket_path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr, "shoji: cannot reach shojid at %s: %s (is shojid running? --socket or $SHOJI_SOCKET)\n",
			socket_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool send_request(int fd, const char *version, const char *method, const char *path,
			 const char *extra, const char *body)
{
	char head[1024];
	size_t blen = body ? strlen(body) : 0;
	int n = snprintf(head, sizeof(head), "%s %s HTTP/%s\r\nHost: shojid\r\n%sContent-Length: %zu\r\n\r\n",
			 method, path, version, extra, blen);
	return n > 0 && (size_t)n < sizeof(head) && send_all(fd, head, (size_t)n) && (!blen || send_all(fd, body, blen));
}

/* The Content-Length of an answer's head; 0 if it has none. */
static size_t content_length(const char *head)
{
	const char *p = strcasestr(head, "\r\nContent-Length:");
	unsigned long n = 0;
	return p && sscanf(p + 17, " %lu", &n) == 1 ? (size_t)n : 0;
}

static int parse_status(const char *resp)
{
	int status = 0;
	return sscanf(resp, "HTTP/%*d.%*d %d", &status) == 1 ? status : -1;
}

bool http_call(const char *socket_path, const char *method, const char *path, const char *body,
	       struct http_response *out)
{
	int fd = http_connect(socket_path);
	if (fd < 0)
		return false;
	if (!send_request(fd, "1.0", method, path, "", body)) {
		fprintf(stderr, "shoji: cannot send the request to shojid: %s\n", strerror(errno));
		close(fd);
		return false;
	}
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);
	ssize_t r = 0;
	while (buf && (r = read(fd, buf + len, cap - len)) > 0) {
		len += (size_t)r;
		if (len == cap) {
			char *nb = cap < (64u << 20) ? realloc(buf, cap * 2 + 1) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	if (!buf)
		return false;
	buf[len] = '\0';
	char *sep = strstr(buf, "\r\n\r\n");
	out->status = parse_status(buf);
	if (!sep || out->status < 0) {
		fprintf(stderr, "shoji: shojid sent no valid HTTP answer\n");
		free(buf);
		return false;
	}
	out->len = len - (size_t)(sep + 4 - buf);
	memmove(buf, sep + 4, out->len + 1);
	out->body = buf;
	return true;
}

/*
 * The rest of an error answer, up to `want` bytes (its Content-Length: an
 * HTTP/1.1 connection stays open after it) or EOF, bounded; then its one
 * line through cli_api_error.
 */
static void report_error(int fd, int status, const char *start, size_t len, size_t want)
{
	char body[4096];
	size_t cap = want < sizeof(body) - 1 ? want : sizeof(body) - 1;
	size_t n = len < cap ? len : cap;
	memcpy(body, start, n);
	ssize_t r;
	while (n < cap && (r = read(fd, body + n, cap - n)) > 0)
		n += (size_t)r;
	body[n] = '\0';
	cli_api_error(status, body);
}

int http_stream(const char *socket_path, const char *path)
{
	int fd = http_connect(socket_path);
	if (fd < 0)
		return -1;
	if (!send_request(fd, "1.0", "GET", path, "", NULL)) {
		close(fd);
		return -1;
	}
	char buf[16384];
	size_t head = 0;
	int status = -1;
	bool in_body = false;
	ssize_t r;
	while ((r = read(fd, buf + head, sizeof(buf) - 1 - head)) > 0) {
		if (in_body) {
			fwrite(buf, 1, (size_t)r, stdout);
			fflush(stdout);
			continue;
		}
		head += (size_t)r;
		buf[head] = '\0';
		char *sep = strstr(buf, "\r\n\r\n");
		if (!sep) {
			if (head == sizeof(buf) - 1)
				break;
			continue;
		}
		status = parse_status(buf);
		size_t rest = head - (size_t)(sep + 4 - buf);
		if (status != 200) {
			report_error(fd, status, sep + 4, rest, SIZE_MAX); /* HTTP/1.0: closed after it */
			break;
		}
		fwrite(sep + 4, 1, rest, stdout);
		fflush(stdout);
		in_body = true;
		head = 0;
	}
	if (status < 0)
		fprintf(stderr, "shoji: shojid sent no valid HTTP answer\n");
	close(fd);
	return status;
}

bool http_lines_open(const char *socket_path, const char *path, struct http_lines *s)
{
	s->len = s->used = 0;
	s->fd = http_connect(socket_path);
	if (s->fd < 0)
		return false;
	if (!send_request(s->fd, "1.0", "GET", path, "", NULL)) {
		fprintf(stderr, "shoji: cannot send the request to shojid: %s\n", strerror(errno));
		http_lines_close(s);
		return false;
	}
	ssize_t r;
	while (s->len < sizeof(s->buf) - 1 && (r = read(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len)) > 0) {
		s->len += (size_t)r;
		s->buf[s->len] = '\0';
		char *sep = strstr(s->buf, "\r\n\r\n");
		if (!sep)
			continue;
		int status = parse_status(s->buf);
		size_t rest = s->len - (size_t)(sep + 4 - s->buf);
		if (status == 200) {
			memmove(s->buf, sep + 4, rest);
			s->len = rest;
			return true;
		}
		report_error(s->fd, status, sep + 4, rest, SIZE_MAX); /* HTTP/1.0: closed after it */
		http_lines_close(s);
		return false;
	}
	fprintf(stderr, "shoji: shojid sent no valid HTTP answer\n");
	http_lines_close(s);
	return false;
}

const char *http_lines_next(struct http_lines *s, int timeout_ms)
{
	memmove(s->buf, s->buf + s->used, s->len - s->used);
	s->len -= s->used;
	s->used = 0;
	for (;;) {
		char *nl = memchr(s->buf, '\n', s->len);
		if (nl) {
			*nl = '\0';
			s->used = (size_t)(nl - s->buf) + 1;
			return s->buf;
		}
		struct pollfd p = { .fd = s->fd, .events = POLLIN };
		if (s->len == sizeof(s->buf) || poll(&p, 1, timeout_ms) != 1)
			return NULL;
		ssize_t r = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
		if (r <= 0)
			return NULL;
		s->len += (size_t)r;
	}
}

void http_lines_close(struct http_lines *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

int http_upgrade(const char *socket_path, const char *path, const char *protocol)
{
	int fd = http_connect(socket_path);
	if (fd < 0)
		return -1;
	char extra[128];
	snprintf(extra, sizeof(extra), "Connection: Upgrade\r\nUpgrade: %s\r\n", protocol);
	if (!send_request(fd, "1.1", "POST", path, extra, NULL)) {
		close(fd);
		return -1;
	}
	/* The answer's head, a byte at a time, so no console byte after it is consumed. */
	char head[4096];
	size_t n = 0;
	while (n + 1 < sizeof(head) && read(fd, head + n, 1) == 1) {
		n++;
		if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	head[n] = '\0';
	if (parse_status(head) == 101)
		return fd;
	/* An error: its JSON body follows the head. */
	report_error(fd, parse_status(head), "", 0, content_length(head));
	close(fd);
	return -1;
}

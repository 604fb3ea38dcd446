/*
 * The VMM's control socket (see api.h). Requests are parsed by hand, not
 * with a JSON library: the grammar is one object with one string member
 * "op", and a strict small parser is easier to trust in the VMM than a
 * general one. Connections are read without blocking, a byte budget per
 * wake-up, and answered with one non-blocking write; a client that does
 * not read its answers is closed. While every slot is taken the listener
 * is held (vmm/listener.h): a further client waits in the backlog until
 * one leaves, rather than being closed unanswered.
 */
#include "vmm/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "base/unix-socket.h"
#include "vmm/listener.h"

struct api_conn {
	struct vmm_api *api;
	int fd;
	struct io_watch *w;
	char line[VMM_API_LINE_MAX];
	unsigned len;
	bool used;
};

struct vmm_api {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	struct listener *listener;
	unsigned clients;         /* slots in use; the listener is held at the bound */
	struct iothread *io;
	struct vmm_api_ops ops;
	struct api_conn conns[VMM_API_MAX_CLIENTS]; /* touched on the I/O thread only */
};

/* ---- parsing ---- */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *expect(const char *p, const char *lit)
{
	p = skip_ws(p);
	size_t n = strlen(lit);
	return p && strncmp(p, lit, n) == 0 ? p + n : NULL;
}

bool vmm_api_parse(const char *line, char *op, unsigned oplen)
{
	const char *p = expect(line, "{");
	p = p ? expect(p, "\"op\"") : NULL;
	p = p ? expect(p, ":") : NULL;
	p = p ? expect(p, "\"") : NULL;
	if (!p)
		return false;
	unsigned n = 0;
	while ((*p >= 'a' && *p <= 'z') || *p == '-') {
		if (n + 1 >= oplen)
			return false;
		op[n++] = *p++;
	}
	op[n] = '\0';
	p = n ? expect(p, "\"") : NULL;
	p = p ? expect(p, "}") : NULL;
	return p && *skip_ws(p) == '\0';
}

/* ---- connections ---- */

static void conn_close(struct api_conn *c)
{
	struct vmm_api *api = c->api;
	iothread_unwatch(c->w);
	close(c->fd);
	c->w = NULL;
	c->used = false;
	if (api->clients-- == VMM_API_MAX_CLIENTS)
		listener_hold(api->listener, false);
}

/* One short answer; false if it could not be written whole (the client is closed). */
static bool conn_reply(struct api_conn *c, const char *text)
{
	size_t n = strlen(text);
	/* write(), not send(): the base seccomp list has it; SIGPIPE is ignored in the VMM. */
	return write(c->fd, text, n) == (ssize_t)n;
}

static bool conn_request(struct api_conn *c)
{
	char op[32];
	if (!vmm_api_parse(c->line, op, sizeof(op))) {
		conn_reply(c, "{\"ok\":false,\"error\":\"bad request: send {\\\"op\\\":\\\"NAME\\\"} and a newline\"}\n");
		return false;
	}
	if (strcmp(op, "ping") == 0)
		return conn_reply(c, "{\"ok\":true}\n");
	if (strcmp(op, "power-button") == 0) {
		log_info("control socket: pressing the ACPI power button");
		if (c->api->ops.power_button)
			c->api->ops.power_button(c->api->ops.ctx);
		return conn_reply(c, "{\"ok\":true}\n");
	}
	struct vmm_api_ops *ops = &c->api->ops;
	if ((strcmp(op, "pause") == 0 || strcmp(op, "resume") == 0) && ops->pause) {
		ops->pause(ops->ctx, op[0] == 'p');
		return conn_reply(c, "{\"ok\":true}\n");
	}
	if (strcmp(op, "status") == 0)
		return conn_reply(c, ops->paused && ops->paused(ops->ctx) ? "{\"ok\":true,\"paused\":true}\n"
									   : "{\"ok\":true,\"paused\":false}\n");
	conn_reply(c, "{\"ok\":false,\"error\":\"unknown op (use ping, power-button, pause, resume or status)\"}\n");
	return false;
}

static void on_conn(void *ctx, uint32_t events)
{
	(void)events;
	struct api_conn *c = ctx;
	char buf[VMM_API_LINE_MAX];
	ssize_t r = read(c->fd, buf, sizeof(buf)); /* non-blocking since accept4 */
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		conn_close(c);
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] == '\n') {
			c->line[c->len] = '\0';
			c->len = 0;
			if (!conn_request(c)) {
				conn_close(c);
				return;
			}
		} else if (buf[i] == '\0' || c->len + 1 >= VMM_API_LINE_MAX) {
			conn_reply(c, "{\"ok\":false,\"error\":\"request line too long or not text\"}\n");
			conn_close(c);
			return;
		} else {
			c->line[c->len++] = buf[i];
		}
	}
}

/* A new client; the listener is held while every slot is taken, so one is free. */
static void on_accept(void *ctx, int fd)
{
	struct vmm_api *api = ctx;
	struct api_conn *c = NULL;
	for (unsigned i = 0; i < VMM_API_MAX_CLIENTS && !c; i++)
		if (!api->conns[i].used)
			c = &api->conns[i];
	/* Refused only when the hold failed or epoll would not watch it: say why first. */
	const char *why = !c ? "{\"ok\":false,\"error\":\"too many clients\"}\n" : NULL;
	if (c) {
		*c = (struct api_conn){ .api = api, .fd = fd, .used = true };
		c->w = iothread_watch(api->io, fd, EPOLLIN, on_conn, c);
		c->used = c->w != NULL;
		if (!c->w)
			why = "{\"ok\":false,\"error\":\"out of resources in the VMM\"}\n";
	}
	if (why) {
		ssize_t w = write(fd, why, strlen(why)); /* an empty socket: it fits, or nobody listens */
		(void)w;
		close(fd);
		return;
	}
	if (++api->clients == VMM_API_MAX_CLIENTS)
		listener_hold(api->listener, true);
}

/* ---- lifecycle ---- */

struct vmm_api *vmm_api_create(const char *path, struct iothread *io, const struct vmm_api_ops *ops)
{
	struct vmm_api *api = calloc(1, sizeof(*api));
	if (!api || strlen(path) >= sizeof(api->path)) {
		log_error("--api-socket %s: path too long or out of memory", path);
		free(api);
		return NULL;
	}
	memcpy(api->path, path, strlen(path) + 1);
	api->io = io;
	api->ops = *ops;
	api->listen_fd = unix_listen("--api-socket", path, VMM_API_BACKLOG, SOCK_NONBLOCK);
	if (api->listen_fd >= 0)
		api->listener = listener_create(io, api->listen_fd, "--api-socket", on_accept, api);
	if (!api->listener) {
		if (api->listen_fd >= 0) {
			close(api->listen_fd);
			unlink(path);
		}
		free(api);
		return NULL;
	}
	return api;
}

void vmm_api_destroy(struct vmm_api *api)
{
	if (!api)
		return;
	/* The I/O thread and its watches are gone: only descriptors are left. */
	listener_destroy(api->listener, true);
	for (unsigned i = 0; i < VMM_API_MAX_CLIENTS; i++)
		if (api->conns[i].used)
			close(api->conns[i].fd);
	close(api->listen_fd);
	unlink(api->path);
	free(api);
}

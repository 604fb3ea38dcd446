/*
 * Console backend (see console.h). One thread, one epoll set:
 *   - the UART's notify fd: output waiting, or input room freed;
 *   - the input fd (terminal/stdin or the socket client), polled only while
 *     the UART has room for input;
 *   - the output fd, polled for writability only while a write would block;
 *   - the listening socket, when there is one, polled only while there is
 *     no client: a second client waits in the backlog until the first
 *     leaves (back-pressure, not a refusal);
 *   - a stop eventfd.
 * When accept or dup runs out of descriptors, the listener is unpolled for
 * LISTEN_BACKOFF_MS (an epoll_wait timeout) instead of firing in a loop.
 * Output fds are non-blocking so a stuck reader can never wedge the thread;
 * their original flags are put back on close.
 */
#include "vmm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/unix-socket.h"
#include "base/util.h"

#define ESCAPE_CHAR 0x01 /* Ctrl-a */
#define DRAIN_TIMEOUT_MS 2000
#define LISTEN_BACKOFF_MS 100
#define LISTEN_BACKLOG   4

enum { TAG_NOTIFY, TAG_INPUT, TAG_OUTPUT, TAG_LISTEN, TAG_STOP };

struct console {
	struct console_config cfg;
	struct serial *serial;
	void (*on_quit)(void *ctx);
	void *quit_ctx;

	int epoll_fd;
	int stop_fd;
	int in_fd;      /* -1 when there is no input (file, off, EOF) */
	int out_fd;     /* -1 when output is discarded */
	int listen_fd;  /* socket mode only */
	int pending_fd; /* accepted, waiting for a descriptor to dup (-1: none) */
	long retry_at;  /* monotonic ms when a back-off ends; 0: none */
	bool warned;    /* this shortage of descriptors was logged */
	bool in_polled;
	bool out_polled;
	bool listen_polled;
	bool escape_pending;

	bool tty_raw;
	struct termios saved_termios;
	int saved_out_flags;
	int saved_in_flags;

	pthread_t thread;
	bool thread_started;
};

static void epoll_set(struct console *con, int fd, int tag, uint32_t events, bool *polled)
{
	struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)tag };
	bool want = events != 0;
	if (want == *polled)
		return;
	if (epoll_ctl(con->epoll_fd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) == 0) {
		*polled = want;
	} else if (tag == TAG_INPUT && errno == EPERM) {
		/* stdin is a regular file or /dev/null: nothing to wait for. */
		con->in_fd = -1;
	}
}

static void console_drop_client(struct console *con);

/* The listener is polled while a client could be taken: none connected, no back-off. */
static void console_update_listen_poll(struct console *con)
{
	if (con->listen_fd < 0)
		return;
	bool want = con->in_fd < 0 && con->pending_fd < 0 && con->retry_at == 0;
	epoll_set(con, con->listen_fd, TAG_LISTEN, want ? EPOLLIN : 0, &con->listen_polled);
}

/* Out of descriptors: stop polling the listener for a while (see the thread loop). */
static void console_back_off(struct console *con, int err)
{
	if (!con->warned)
		log_warn("console socket: cannot take a client (%s); retrying every %d ms",
			 strerror(err), LISTEN_BACKOFF_MS);
	con->warned = true;
	con->retry_at = monotonic_ms() + LISTEN_BACKOFF_MS;
	console_update_listen_poll(con);
}

/* Writes pending UART output until it is all out or the sink would block. */
static void console_drain(struct console *con)
{
	uint8_t buf[4096];
	size_t n;
	while ((n = serial_tx_peek(con->serial, buf, sizeof(buf))) > 0) {
		if (con->out_fd < 0) {
			serial_tx_consume(con->serial, n); /* no reader: discard */
			continue;
		}
		ssize_t w = write(con->out_fd, buf, n);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			epoll_set(con, con->out_fd, TAG_OUTPUT, EPOLLOUT, &con->out_polled);
			return;
		}
		if (w < 0) {
			if (con->cfg.kind == CONSOLE_SOCKET) {
				console_drop_client(con); /* the client went away */
			} else {
				log_warn("console output failed: %m; discarding further output");
				con->out_fd = -1;
			}
			continue;
		}
		serial_tx_consume(con->serial, (size_t)w);
	}
	if (con->out_fd >= 0)
		epoll_set(con, con->out_fd, TAG_OUTPUT, 0, &con->out_polled);
}

/* Terminal escapes: Ctrl-a x quits, Ctrl-a Ctrl-a sends one Ctrl-a. */
static size_t console_filter_escapes(struct console *con, uint8_t *buf, size_t n, bool *quit)
{
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = buf[i];
		if (con->escape_pending) {
			con->escape_pending = false;
			if (c == 'x' || c == 'X') {
				*quit = true;
				return out;
			}
			if (c == ESCAPE_CHAR)
				buf[out++] = c;
			continue;
		}
		if (c == ESCAPE_CHAR) {
			con->escape_pending = true;
			continue;
		}
		buf[out++] = c;
	}
	return out;
}

static void console_drop_client(struct console *con)
{
	epoll_set(con, con->in_fd, TAG_INPUT, 0, &con->in_polled);
	if (con->cfg.kind == CONSOLE_SOCKET) {
		/* The client's socket serves both ways, through two descriptors. */
		epoll_set(con, con->out_fd, TAG_OUTPUT, 0, &con->out_polled);
		close(con->in_fd);
		close(con->out_fd);
		con->out_fd = -1;
	}
	con->in_fd = -1;
	console_update_listen_poll(con);
}

static void console_read_input(struct console *con)
{
	uint8_t buf[256];
	size_t room = serial_rx_space(con->serial);
	if (room == 0)
		return;
	ssize_t r = read(con->in_fd, buf, room < sizeof(buf) ? room : sizeof(buf));
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		console_drop_client(con); /* EOF: stop reading, keep writing */
		return;
	}
	size_t n = (size_t)r;
	bool quit = false;
	if (con->tty_raw)
		n = console_filter_escapes(con, buf, n, &quit);
	serial_rx_push(con->serial, buf, n); /* fits: we read at most `room` */
	if (quit && con->on_quit)
		con->on_quit(con->quit_ctx);
}

/* Makes `fd` the client: one descriptor per direction, as epoll needs. */
static void console_take_client(struct console *con, int fd)
{
	int out = dup(fd);
	if (out < 0) {
		con->pending_fd = fd; /* taken again when the back-off ends */
		console_back_off(con, errno);
		return;
	}
	fcntl(out, F_SETFD, FD_CLOEXEC);
	con->pending_fd = -1;
	con->warned = false;
	con->in_fd = fd;
	con->out_fd = out;
	console_update_listen_poll(con);
	console_drain(con);
}

static void console_accept(struct console *con)
{
	if (con->in_fd >= 0 || con->pending_fd >= 0)
		return; /* a stale event: the listener is unpolled while there is a client */
	int fd = accept4(con->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd >= 0)
		console_take_client(con, fd);
	else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		console_back_off(con, errno);
}

/* epoll_wait's timeout: until the back-off ends, or forever. */
static int console_wait_ms(struct console *con)
{
	if (con->retry_at == 0)
		return -1;
	long left = con->retry_at - monotonic_ms();
	return left > 0 ? (int)left : 0;
}

/* The back-off is over: the waiting client, or the listener again. */
static void console_retry(struct console *con)
{
	if (con->retry_at == 0 || monotonic_ms() < con->retry_at)
		return;
	con->retry_at = 0;
	if (con->pending_fd >= 0)
		console_take_client(con, con->pending_fd);
	else
		console_update_listen_poll(con);
}

static void console_update_input_poll(struct console *con)
{
	if (con->in_fd < 0)
		return;
	bool room = serial_rx_space(con->serial) > 0;
	epoll_set(con, con->in_fd, TAG_INPUT, room ? EPOLLIN : 0, &con->in_polled);
}

static void *console_thread(void *arg)
{
	struct console *con = arg;
	for (;;) {
		console_update_input_poll(con);
		struct epoll_event events[8];
		int n = epoll_wait(con->epoll_fd, events, 8, console_wait_ms(con));
		console_retry(con);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("console: epoll_wait failed: %m");
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			switch (events[i].data.u32) {
			case TAG_STOP:
				return NULL;
			case TAG_NOTIFY:
				serial_notify_ack(con->serial);
				console_drain(con);
				break;
			case TAG_OUTPUT:
				console_drain(con);
				break;
			case TAG_INPUT:
				if (con->in_fd >= 0)
					console_read_input(con);
				break;
			case TAG_LISTEN:
				console_accept(con);
				break;
			}
		}
	}
}

static bool console_setup_tty(struct console *con)
{
	con->in_fd = STDIN_FILENO;
	con->out_fd = STDOUT_FILENO;
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &con->saved_termios) == 0) {
		struct termios raw = con->saved_termios;
		cfmakeraw(&raw);
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
			con->tty_raw = true;
	}
	con->saved_in_flags = fcntl(STDIN_FILENO, F_GETFL);
	con->saved_out_flags = fcntl(STDOUT_FILENO, F_GETFL);
	if (con->saved_in_flags >= 0)
		fcntl(STDIN_FILENO, F_SETFL, con->saved_in_flags | O_NONBLOCK);
	else
		con->in_fd = -1; /* stdin closed */
	if (con->saved_out_flags >= 0)
		fcntl(STDOUT_FILENO, F_SETFL, con->saved_out_flags | O_NONBLOCK);
	else
		con->out_fd = -1;
	return true;
}

static bool console_setup_file(struct console *con)
{
	con->out_fd = open(con->cfg.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0640);
	if (con->out_fd < 0) {
		log_error("--serial file=%s: cannot create: %m", con->cfg.path);
		return false;
	}
	return true;
}

static bool console_setup_socket(struct console *con)
{
	/* Only the owner may talk to the console: 0600, like every socket. */
	con->listen_fd = unix_listen("--serial socket", con->cfg.path, LISTEN_BACKLOG, SOCK_NONBLOCK);
	return con->listen_fd >= 0;
}

static bool console_add_fd(struct console *con, int fd, int tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)tag };
	return epoll_ctl(con->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

struct console *console_open(const struct console_config *cfg, struct serial *serial,
			     void (*on_quit)(void *ctx), void *ctx)
{
	struct console *con = calloc(1, sizeof(*con));
	if (!con)
		return NULL;
	con->cfg = *cfg;
	con->serial = serial;
	con->on_quit = on_quit;
	con->quit_ctx = ctx;
	con->in_fd = con->out_fd = con->listen_fd = con->pending_fd = -1;
	con->saved_in_flags = con->saved_out_flags = -1;
	con->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	con->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (con->epoll_fd < 0 || con->stop_fd < 0) {
		log_error("console: cannot create epoll or eventfd: %m");
		goto fail;
	}

	bool ok = true;
	switch (cfg->kind) {
	case CONSOLE_TTY: ok = console_setup_tty(con); break;
	case CONSOLE_FILE: ok = console_setup_file(con); break;
	case CONSOLE_SOCKET: ok = console_setup_socket(con); break;
	case CONSOLE_OFF: break;
	}
	if (!ok)
		goto fail;
	if (!console_add_fd(con, con->stop_fd, TAG_STOP) ||
	    !console_add_fd(con, serial_notify_fd(serial), TAG_NOTIFY)) {
		log_error("console: epoll_ctl failed: %m");
		goto fail;
	}
	console_update_listen_poll(con);
	if (con->listen_fd >= 0 && !con->listen_polled) {
		log_error("console: epoll_ctl failed: %m");
		goto fail;
	}
	return con;
fail:
	console_close(con);
	return NULL;
}

bool console_start(struct console *con)
{
	int rc = pthread_create(&con->thread, NULL, console_thread, con);
	if (rc != 0) {
		log_error("console: cannot start thread: %s", strerror(rc));
		return false;
	}
	con->thread_started = true;
	return true;
}

/* Final delivery after the thread stopped: pending output, bounded in time. */
static void console_flush_remaining(struct console *con)
{
	long deadline = monotonic_ms() + DRAIN_TIMEOUT_MS;
	while (serial_tx_pending(con->serial) > 0 && con->out_fd >= 0 && monotonic_ms() < deadline) {
		console_drain(con);
		if (serial_tx_pending(con->serial) > 0) {
			struct epoll_event ev;
			epoll_wait(con->epoll_fd, &ev, 1, 50);
		}
	}
}

static void console_restore_fds(struct console *con)
{
	if (con->tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &con->saved_termios);
	con->tty_raw = false;
	if (con->cfg.kind != CONSOLE_TTY)
		return;
	if (con->saved_in_flags >= 0)
		fcntl(STDIN_FILENO, F_SETFL, con->saved_in_flags);
	if (con->saved_out_flags >= 0)
		fcntl(STDOUT_FILENO, F_SETFL, con->saved_out_flags);
	con->saved_in_flags = con->saved_out_flags = -1;
}

void console_close(struct console *con)
{
	if (!con)
		return;
	if (con->thread_started) {
		uint64_t one = 1;
		ssize_t w = write(con->stop_fd, &one, sizeof(one));
		(void)w;
		pthread_join(con->thread, NULL);
		console_flush_remaining(con);
	}
	console_restore_fds(con);
	if (con->cfg.kind == CONSOLE_FILE && con->out_fd >= 0)
		close(con->out_fd);
	if (con->cfg.kind == CONSOLE_SOCKET) {
		if (con->pending_fd >= 0)
			close(con->pending_fd);
		if (con->in_fd >= 0)
			close(con->in_fd);
		if (con->out_fd >= 0)
			close(con->out_fd);
		if (con->listen_fd >= 0) {
			close(con->listen_fd);
			unlink(con->cfg.path);
		}
	}
	if (con->epoll_fd >= 0)
		close(con->epoll_fd);
	if (con->stop_fd >= 0)
		close(con->stop_fd);
	free(con);
}

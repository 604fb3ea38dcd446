/*
 * `shoji vm console NAME`: the VM's serial console on this terminal, raw,
 * until the user types the escape: Ctrl-] alone, or Ctrl-a then d (as in
 * screen). Ctrl-a is shoji-vmm's own escape too, so Ctrl-a Ctrl-a sends one
 * Ctrl-a to the guest. The daemon relays; closing the console never
 * touches the VM.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/shoji-http.h"
#include "cli/shoji.h"

#define KEY_CTRL_RBRACKET 0x1d
#define KEY_CTRL_A 0x01

/* Filters the escapes out of buf; true when the user asked to detach. */
static bool filter_keys(char *buf, size_t *n, bool *pending)
{
	size_t out = 0;
	for (size_t i = 0; i < *n; i++) {
		char c = buf[i];
		if (*pending) {
			*pending = false;
			if (c == 'd')
				return true;
			if (c != KEY_CTRL_A)
				buf[out++] = KEY_CTRL_A;
			buf[out++] = c;
			continue;
		}
		if (c == KEY_CTRL_RBRACKET)
			return true;
		if (c == KEY_CTRL_A) {
			*pending = true;
			continue;
		}
		buf[out++] = c;
	}
	*n = out;
	return false;
}

static void relay(int fd)
{
	char buf[4096];
	bool pending = false;
	for (;;) {
		struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0)
			return;
		if (p[1].revents) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r <= 0) {
				fputs("\r\n[shoji: the console closed]\r\n", stderr);
				return;
			}
			ssize_t w = write(STDOUT_FILENO, buf, (size_t)r);
			(void)w;
		}
		if (p[0].revents) {
			ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
			if (r <= 0)
				return;
			size_t n = (size_t)r;
			if (filter_keys(buf, &n, &pending))
				return;
			if (n && write(fd, buf, n) < 0)
				return;
		}
	}
}

int cli_vm_console(const struct cli *cli, const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/vms/%s/console", name);
	int fd = http_upgrade(cli->socket, path, "shoji-console");
	if (fd < 0)
		return 1;
	struct termios saved, raw;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (tty) {
		fprintf(stderr, "[shoji: console of %s; Ctrl-] or Ctrl-a d detaches]\r\n", name);
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	relay(fd);
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	close(fd);
	return 0;
}

/*
 * The host side of the guest's serial console: a thread that moves bytes
 * between the UART model and a terminal, a file, a Unix socket, or nowhere.
 * It applies back-pressure both ways (see dev/serial.h) and, in terminal
 * mode, owns the terminal: raw while the VM runs, restored on every exit.
 */
#ifndef SHOJI_VMM_CONSOLE_H
#define SHOJI_VMM_CONSOLE_H

#include <stdbool.h>

#include "dev/serial.h"
#include "vmm/options.h"

struct console;

/*
 * Opens the sink and source for `cfg` (creates the file or listening
 * socket). `on_quit` is called from the console thread when the user types
 * the quit escape. Returns NULL after logging one line.
 */
struct console *console_open(const struct console_config *cfg, struct serial *serial,
			     void (*on_quit)(void *ctx), void *ctx);
bool console_start(struct console *con);

/*
 * Stops the thread after delivering pending output (waiting at most a
 * couple of seconds for a stuck sink), restores the terminal, closes fds.
 */
void console_close(struct console *con);

#endif

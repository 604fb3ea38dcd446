/*
 * The console's socket mode (src/vmm/console.c) with a real UART model and
 * a real Unix socket: the guest's output reaches the client; a second
 * client waits in the backlog while the first is connected (it is not
 * closed) and takes over when the first leaves; running out of descriptors
 * (at accept, or at the dup after it) does not make the console thread
 * spin, and the client is served once descriptors are back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fd_starve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dev/serial.h"
#include "fakes.h"
#include "vmm/console.h"

struct fixture {
	char dir[64];
	char path[128];
	struct fake_irq irq;
	struct serial *serial;
	struct console *con;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/shoji-console-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/serial.sock", f->dir);
	f->serial = serial_create(fake_irq_line(&f->irq, 4), 4096);
	struct console_config cfg = { .kind = CONSOLE_SOCKET, .path = f->path };
	f->con = console_open(&cfg, f->serial, NULL, NULL);
	assert_non_null(f->con);
	assert_true(console_start(f->con));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	console_close(f->con);
	serial_destroy(f->serial);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* The guest writes one byte to the UART's transmit register. */
static void guest_putc(struct fixture *f, char c)
{
	uint8_t v = (uint8_t)c;
	serial_io_ops.write(f->serial, 0, &v, 1);
}

static int connect_to(const char *path, int sock)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", path);
	int fd = sock >= 0 ? sock : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* The next byte on fd within 2 s; -1 at EOF or timeout. */
static int read_byte(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;
	if (poll(&p, 1, 2000) != 1 || read(fd, &c, 1) != 1)
		return -1;
	return (unsigned char)c;
}

static void test_second_client_waits(void **state)
{
	struct fixture *f = *state;
	int a = connect_to(f->path, -1);
	usleep(50000); /* the console thread takes it */
	guest_putc(f, 'a');
	assert_int_equal(read_byte(a), 'a');
	/* The second one is neither served nor closed while the first is there. */
	int b = connect_to(f->path, -1);
	struct pollfd p = { .fd = b, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 300), 0);
	close(a);
	usleep(50000); /* the console thread sees the EOF and takes the next */
	guest_putc(f, 'b');
	assert_int_equal(read_byte(b), 'b');
	close(b);
}

/*
 * Runs the console with every descriptor taken but `spare` while a client
 * connects, for half a second; fails if the console thread burns CPU;
 * then gives the descriptors back and checks the client is served.
 */
static void starve_and_serve(struct fixture *f, int spare)
{
	int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int saved_err = dup(STDERR_FILENO);
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(client >= 0 && saved_err >= 0 && devnull >= 0);
	dup2(devnull, STDERR_FILENO);
	close(devnull);
	static struct fd_starve starve;
	fd_starve_begin(&starve);
	fd_starve_give(&starve, spare);
	connect_to(f->path, client);
	usleep(50000);
	double cpu0 = cpu_seconds();
	usleep(500000);
	double cpu = cpu_seconds() - cpu0;
	fd_starve_end(&starve);
	dup2(saved_err, STDERR_FILENO);
	close(saved_err);
	if (cpu > 0.15)
		fail_msg("out of descriptors: %.3f s of CPU in 0.5 s", cpu);
	/* Descriptors came back: the waiting client becomes the console's. */
	usleep(300000);
	guest_putc(f, 'c');
	assert_int_equal(read_byte(client), 'c');
	close(client);
}

/* accept4 fails with EMFILE. */
static void test_out_of_descriptors_does_not_spin(void **state)
{
	starve_and_serve(*state, 0);
}

/* accept4 takes the last descriptor and dup, for the second direction, fails. */
static void test_out_of_descriptors_after_accept(void **state)
{
	starve_and_serve(*state, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_second_client_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_descriptors_does_not_spin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_descriptors_after_accept, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

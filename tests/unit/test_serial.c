/*
 * Unit tests for the 16550A model (src/dev/serial.h) with a fake interrupt
 * line. Register behaviour follows the PC16550D data sheet and what Linux's
 * 8250 driver relies on: its probe (IER read-back, loopback MSR test,
 * FIFO bits in IIR, not mistaken for a 16750), THRE and RDI interrupts with
 * IIR acknowledging THRE, divisor latches behind DLAB. The host side: output
 * in order and never lost (LSR.THRE clears when the queue is full; a
 * writer that ignores it blocks until the backend consumes or shuts down),
 * input taken only as fast as there is room, notify fd readable when the
 * backend has work.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dev/serial.h"
#include "fakes.h"

/* Register offsets and bits (PC16550D). */
#define RBR 0
#define THR 0
#define DLL 0
#define IER 1
#define DLM 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_ID_MASK 0x0e
#define IIR_ID_THRI 0x02
#define IIR_ID_RDI  0x04
#define FCR_ENABLE 0x01
#define FCR7_64BYTE 0x20
#define LCR_DLAB 0x80
#define LCR_8N1  0x03
#define MCR_LOOP 0x10
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define GSI 4

struct fixture {
	struct fake_irq irq;
	struct serial *s;
};

static struct fixture *fixture_new(size_t tx_capacity)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->s = serial_create(fake_irq_line(&f->irq, GSI), tx_capacity);
	assert_non_null(f->s);
	return f;
}

static void fixture_free(struct fixture *f)
{
	assert_int_equal(atomic_load(&f->irq.wrong_gsi), 0);
	serial_destroy(f->s);
	free(f);
}

static uint8_t rd(struct serial *s, unsigned reg)
{
	uint8_t v = 0x5a;
	serial_io_ops.read(s, reg, &v, 1);
	return v;
}

static void wr(struct serial *s, unsigned reg, uint8_t v)
{
	serial_io_ops.write(s, reg, &v, 1);
}

static int irq_level(const struct fixture *f)
{
	return atomic_load(&f->irq.level);
}

static bool notify_readable(struct serial *s)
{
	struct pollfd p = { .fd = serial_notify_fd(s), .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* The sequence of Linux's autoconfig() and autoconfig_16550a(). */
static void test_linux_probe(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct serial *s = f->s;

	/* IER: the low four bits read back what was written. */
	wr(s, IER, 0);
	assert_int_equal(rd(s, IER) & 0x0f, 0);
	wr(s, IER, 0x0f);
	assert_int_equal(rd(s, IER) & 0x0f, 0x0f);
	wr(s, IER, 0);

	/* Scratch register. */
	wr(s, SCR, 0xa5);
	assert_int_equal(rd(s, SCR), 0xa5);
	wr(s, SCR, 0x5a);
	assert_int_equal(rd(s, SCR), 0x5a);

	/* Loopback: RTS -> CTS, OUT2 -> DCD, so MSR[7:4] = 1001b. */
	wr(s, MCR, MCR_LOOP | 0x0a);
	assert_int_equal(rd(s, MSR) & 0xf0, 0x90);
	wr(s, MCR, MCR_LOOP | 0x05); /* DTR -> DSR, OUT1 -> RI */
	assert_int_equal(rd(s, MSR) & 0xf0, 0x60);
	wr(s, MCR, 0);

	/* FIFO enabled: IIR[7:6] == 3 means a 16550A. */
	wr(s, FCR, FCR_ENABLE);
	assert_int_equal(rd(s, IIR) >> 6, 3);

	/* Not a 16750: that one sets IIR bit 5 when FCR7_64BYTE is written under DLAB. */
	wr(s, LCR, 0);
	wr(s, FCR, FCR_ENABLE | FCR7_64BYTE);
	uint8_t status1 = rd(s, IIR) >> 5;
	wr(s, FCR, FCR_ENABLE);
	wr(s, LCR, LCR_DLAB);
	wr(s, FCR, FCR_ENABLE | FCR7_64BYTE);
	uint8_t status2 = rd(s, IIR) >> 5;
	wr(s, FCR, FCR_ENABLE);
	wr(s, LCR, 0);
	assert_false(status1 == 6 && status2 == 7);

	/* Idle: transmitter empty, nothing received, no interrupt. */
	assert_int_equal(rd(s, LSR) & (LSR_THRE | LSR_TEMT | LSR_DR), LSR_THRE | LSR_TEMT);
	assert_true(rd(s, IIR) & IIR_NO_INT);
	assert_int_equal(irq_level(f), 0);
	fixture_free(f);
}

static void test_tx_order(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct serial *s = f->s;
	wr(s, LCR, LCR_8N1);
	assert_false(notify_readable(s));
	static const char msg[] = "hello, shoji";
	for (size_t i = 0; i < sizeof(msg) - 1; i++)
		wr(s, THR, (uint8_t)msg[i]);
	assert_true(notify_readable(s));
	assert_int_equal(serial_tx_pending(s), sizeof(msg) - 1);

	uint8_t out[64];
	assert_int_equal(serial_tx_peek(s, out, sizeof(out)), sizeof(msg) - 1);
	assert_memory_equal(out, msg, sizeof(msg) - 1);
	assert_int_equal(serial_tx_peek(s, out, 3), 3); /* peek does not remove */
	serial_tx_consume(s, 7);
	assert_int_equal(serial_tx_peek(s, out, sizeof(out)), sizeof(msg) - 8);
	assert_memory_equal(out, msg + 7, sizeof(msg) - 8);
	serial_tx_consume(s, 1000); /* more than pending: just empties */
	assert_int_equal(serial_tx_pending(s), 0);

	serial_notify_ack(s);
	assert_false(notify_readable(s));
	fixture_free(f);
}

/* Order survives the ring wrapping many times. */
static void test_tx_wraps(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(7);
	struct serial *s = f->s;
	uint8_t next_in = 0, next_out = 0;
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 5; i++)
			wr(s, THR, next_in++);
		uint8_t out[8];
		size_t n = serial_tx_peek(s, out, 3);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(out[i], (uint8_t)(next_out + i));
		serial_tx_consume(s, n);
		next_out = (uint8_t)(next_out + n);
		n = serial_tx_peek(s, out, sizeof(out));
		for (size_t i = 0; i < n; i++)
			assert_int_equal(out[i], (uint8_t)(next_out + i));
		serial_tx_consume(s, n);
		next_out = (uint8_t)(next_out + n);
	}
	assert_int_equal(next_in, next_out);
	fixture_free(f);
}

static void test_thre_interrupt(void **state)
{
	(void)state;
	enum { CAP = 8 };
	struct fixture *f = fixture_new(CAP);
	struct serial *s = f->s;

	/* Enabling THRI with room in the transmitter raises it at once. */
	wr(s, IER, IER_THRI);
	assert_int_equal(irq_level(f), 1);
	uint8_t iir = rd(s, IIR);
	assert_int_equal(iir & (IIR_NO_INT | IIR_ID_MASK), IIR_ID_THRI);
	/* Reading IIR acknowledged it. */
	assert_int_equal(irq_level(f), 0);
	assert_true(rd(s, IIR) & IIR_NO_INT);

	/* Fill the queue: THRE stays set until the last free byte is taken. */
	for (int i = 0; i < CAP; i++) {
		assert_true(rd(s, LSR) & LSR_THRE);
		wr(s, THR, (uint8_t)('a' + i));
	}
	assert_false(rd(s, LSR) & LSR_THRE);
	assert_false(rd(s, LSR) & LSR_TEMT);
	assert_int_equal(irq_level(f), 0);
	assert_true(rd(s, IIR) & IIR_NO_INT);

	/* The backend makes room: THRE and its interrupt come back. */
	unsigned raises = atomic_load(&f->irq.raises);
	serial_tx_consume(s, 3);
	assert_true(rd(s, LSR) & LSR_THRE);
	assert_int_equal(irq_level(f), 1);
	assert_true(atomic_load(&f->irq.raises) > raises);
	assert_int_equal(rd(s, IIR) & (IIR_NO_INT | IIR_ID_MASK), IIR_ID_THRI);
	assert_int_equal(irq_level(f), 0);

	/* With THRI disabled, room comes back without an interrupt. */
	for (int i = 0; i < 3; i++)
		wr(s, THR, 'x');
	wr(s, IER, 0);
	serial_tx_consume(s, 1);
	assert_int_equal(irq_level(f), 0);
	assert_true(rd(s, IIR) & IIR_NO_INT);
	fixture_free(f);
}

static void test_rx(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct serial *s = f->s;

	/* Without RDI enabled: data ready, no interrupt. */
	assert_int_equal(serial_rx_push(s, (const uint8_t *)"k", 1), 1);
	assert_true(rd(s, LSR) & LSR_DR);
	assert_int_equal(irq_level(f), 0);
	assert_int_equal(rd(s, RBR), 'k');
	assert_false(rd(s, LSR) & LSR_DR);

	wr(s, IER, IER_RDI);
	assert_int_equal(irq_level(f), 0);
	assert_int_equal(serial_rx_push(s, (const uint8_t *)"abc", 3), 3);
	assert_int_equal(irq_level(f), 1);
	assert_int_equal(rd(s, IIR) & (IIR_NO_INT | IIR_ID_MASK), IIR_ID_RDI);
	assert_int_equal(irq_level(f), 1); /* reading IIR does not acknowledge data */
	assert_true(rd(s, LSR) & LSR_DR);
	assert_int_equal(rd(s, RBR), 'a');
	assert_int_equal(rd(s, RBR), 'b');
	assert_int_equal(irq_level(f), 1);
	assert_int_equal(rd(s, RBR), 'c');
	assert_false(rd(s, LSR) & LSR_DR);
	assert_int_equal(irq_level(f), 0);
	assert_true(rd(s, IIR) & IIR_NO_INT);

	/* Received data outranks THRE. */
	wr(s, IER, IER_RDI | IER_THRI);
	serial_rx_push(s, (const uint8_t *)"z", 1);
	assert_int_equal(rd(s, IIR) & IIR_ID_MASK, IIR_ID_RDI);
	fixture_free(f);
}

static void test_rx_backpressure(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct serial *s = f->s;
	enum { EXTRA = 100 };
	uint8_t *in = malloc(SERIAL_RX_QUEUE + EXTRA);
	for (size_t i = 0; i < SERIAL_RX_QUEUE + EXTRA; i++)
		in[i] = (uint8_t)(i * 31);

	assert_int_equal(serial_rx_space(s), SERIAL_RX_QUEUE);
	assert_int_equal(serial_rx_push(s, in, SERIAL_RX_QUEUE + EXTRA), SERIAL_RX_QUEUE);
	assert_int_equal(serial_rx_space(s), 0);
	assert_int_equal(serial_rx_push(s, in, 1), 0);

	/* Reading frees space and tells the backend. */
	serial_notify_ack(s);
	assert_false(notify_readable(s));
	assert_int_equal(rd(s, RBR), in[0]);
	assert_int_equal(serial_rx_space(s), 1);
	assert_true(notify_readable(s));

	/* The rest arrives in order after the ring wrapped. */
	assert_int_equal(serial_rx_push(s, in + SERIAL_RX_QUEUE, EXTRA), 1);
	for (size_t i = 1; i <= SERIAL_RX_QUEUE; i++)
		assert_int_equal(rd(s, RBR), in[i]);
	assert_false(rd(s, LSR) & LSR_DR);
	assert_int_equal(serial_rx_space(s), SERIAL_RX_QUEUE);
	free(in);
	fixture_free(f);
}

static void test_dlab(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct serial *s = f->s;
	wr(s, IER, IER_RDI);
	wr(s, LCR, LCR_DLAB | LCR_8N1);
	wr(s, DLL, 0x01);           /* 115200 baud */
	wr(s, DLM, 0x00);
	assert_int_equal(rd(s, DLL), 0x01);
	assert_int_equal(rd(s, DLM), 0x00);
	wr(s, DLL, 0x0c);           /* 9600 */
	wr(s, DLM, 0x80);
	assert_int_equal(rd(s, DLL), 0x0c);
	assert_int_equal(rd(s, DLM), 0x80);
	assert_int_equal(serial_tx_pending(s), 0);       /* nothing transmitted */
	assert_int_equal(rd(s, LCR), LCR_DLAB | LCR_8N1);

	wr(s, LCR, LCR_8N1);
	assert_int_equal(rd(s, LCR), LCR_8N1);
	assert_int_equal(rd(s, IER) & 0x0f, IER_RDI);    /* IER untouched by DLM writes */
	wr(s, THR, 'Z');
	assert_int_equal(serial_tx_pending(s), 1);
	wr(s, LCR, LCR_DLAB | LCR_8N1);
	assert_int_equal(rd(s, DLL), 0x0c);              /* latches kept, not THR data */
	wr(s, LCR, LCR_8N1);
	fixture_free(f);
}

static void test_loopback_data(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct serial *s = f->s;
	wr(s, MCR, MCR_LOOP);
	wr(s, THR, 'q');
	assert_int_equal(serial_tx_pending(s), 0);
	assert_true(rd(s, LSR) & LSR_DR);
	assert_int_equal(rd(s, RBR), 'q');
	wr(s, MCR, 0);
	wr(s, THR, 'r');
	assert_int_equal(serial_tx_pending(s), 1);
	fixture_free(f);
}

/* --- a vCPU that writes THR into a full queue --- */

struct writer {
	struct serial *s;
	uint8_t byte;
	atomic_bool done;
	pthread_t thread;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	wr(w->s, THR, w->byte);
	atomic_store(&w->done, true);
	return NULL;
}

static void writer_start(struct writer *w, struct serial *s, uint8_t byte)
{
	w->s = s;
	w->byte = byte;
	atomic_store(&w->done, false);
	assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Waits up to 5 s; on timeout releases the writer so the test can end. */
static bool writer_finishes(struct writer *w)
{
	for (int i = 0; i < 500 && !atomic_load(&w->done); i++)
		sleep_ms(10);
	bool done = atomic_load(&w->done);
	if (!done)
		serial_shutdown(w->s);
	pthread_join(w->thread, NULL);
	return done;
}

static void fill(struct serial *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		wr(s, THR, (uint8_t)('0' + i));
}

static void test_writer_blocks_until_consumed(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(4);
	fill(f->s, 4);
	struct writer w;
	writer_start(&w, f->s, 'E');
	sleep_ms(100);
	if (atomic_load(&w.done)) {
		pthread_join(w.thread, NULL);
		fail_msg("THR write into a full queue returned without waiting");
	}
	assert_int_equal(serial_tx_pending(f->s), 4);
	serial_tx_consume(f->s, 1);
	if (!writer_finishes(&w))
		fail_msg("serial_tx_consume did not release the blocked writer");
	uint8_t out[8];
	assert_int_equal(serial_tx_peek(f->s, out, sizeof(out)), 4);
	assert_memory_equal(out, "123E", 4);
	fixture_free(f);
}

static void test_writer_released_by_shutdown(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(4);
	fill(f->s, 4);
	struct writer w;
	writer_start(&w, f->s, 'E');
	sleep_ms(100);
	assert_false(atomic_load(&w.done));
	serial_shutdown(f->s);
	for (int i = 0; i < 500 && !atomic_load(&w.done); i++)
		sleep_ms(10);
	bool released = atomic_load(&w.done);
	if (!released) {
		serial_tx_consume(f->s, 4); /* let the thread go before failing */
		pthread_join(w.thread, NULL);
		fail_msg("serial_shutdown did not release the blocked writer");
	}
	pthread_join(w.thread, NULL);

	/* After shutdown, writes never block, even with the queue full. */
	writer_start(&w, f->s, 'F');
	if (!writer_finishes(&w))
		fail_msg("THR write after shutdown blocked");
	assert_int_equal(serial_tx_pending(f->s), 4);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linux_probe),
		cmocka_unit_test(test_tx_order),
		cmocka_unit_test(test_tx_wraps),
		cmocka_unit_test(test_thre_interrupt),
		cmocka_unit_test(test_rx),
		cmocka_unit_test(test_rx_backpressure),
		cmocka_unit_test(test_dlab),
		cmocka_unit_test(test_loopback_data),
		cmocka_unit_test(test_writer_blocks_until_consumed),
		cmocka_unit_test(test_writer_released_by_shutdown),
	};
	return cmocka_run_group_tests_name("dev/serial", tests, NULL, NULL);
}

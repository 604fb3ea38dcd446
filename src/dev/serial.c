/*
 * 16550A UART model (see serial.h). Register semantics follow the National
 * PC16550D data sheet as far as a guest can observe them; baud rate and
 * line settings are stored and otherwise ignored, since bytes move at host
 * speed. The interrupt line is modelled as a level (pending or not) and
 * handed to the irqchip only when it changes.
 */
#include "dev/serial.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define REG_RBR_THR 0
#define REG_IER     1
#define REG_IIR_FCR 2
#define REG_LCR     3
#define REG_MCR     4
#define REG_LSR     5
#define REG_MSR     6
#define REG_SCR     7

#define IER_RDI   0x01
#define IER_THRI  0x02
#define IER_RLSI  0x04
#define IER_MSI   0x08

#define IIR_NO_INT 0x01
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_FIFO   0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI  0x40
#define MSR_DCD 0x80

struct byte_ring {
	uint8_t *buf;
	size_t cap;
	size_t head; /* next byte to read */
	size_t len;
};

struct serial {
	pthread_mutex_t lock;
	pthread_cond_t tx_room;
	struct irq_line irq;
	int notify_fd;
	bool shut_down;
	int irq_level;

	uint8_t ier, lcr, mcr, scr, dll, dlm, lsr_errors;
	bool fifo_enabled;
	bool thr_ipending;

	struct byte_ring tx;
	struct byte_ring rx;
};

static bool ring_init(struct byte_ring *r, size_t cap)
{
	r->buf = malloc(cap);
	r->cap = cap;
	r->head = r->len = 0;
	return r->buf != NULL;
}

static void ring_put(struct byte_ring *r, uint8_t b)
{
	r->buf[(r->head + r->len) % r->cap] = b;
	r->len++;
}

static uint8_t ring_get(struct byte_ring *r)
{
	uint8_t b = r->buf[r->head];
	r->head = (r->head + 1) % r->cap;
	r->len--;
	return b;
}

static size_t ring_peek(const struct byte_ring *r, uint8_t *out, size_t max)
{
	size_t n = r->len < max ? r->len : max;
	for (size_t i = 0; i < n; i++)
		out[i] = r->buf[(r->head + i) % r->cap];
	return n;
}

static void serial_notify(struct serial *s)
{
	uint64_t one = 1;
	ssize_t w = write(s->notify_fd, &one, sizeof(one));
	(void)w; /* a full eventfd counter is still readable: nothing is lost */
}

static bool tx_has_room(const struct serial *s)
{
	return s->tx.len < s->tx.cap;
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = s->fifo_enabled ? IIR_FIFO : 0;
	if ((s->ier & IER_RDI) && s->rx.len > 0)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_ipending)
		return IIR_THRI | fifo;
	return IIR_NO_INT | fifo;
}

/* Called with the lock held after any state change that may move the line. */
static void serial_update_irq(struct serial *s)
{
	int level = (serial_iir(s) & IIR_NO_INT) ? 0 : 1;
	if (level != s->irq_level) {
		s->irq_level = level;
		irq_line_set(&s->irq, level);
	}
}

static uint8_t serial_msr(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	uint8_t msr = 0;
	if (s->mcr & MCR_RTS)
		msr |= MSR_CTS;
	if (s->mcr & MCR_DTR)
		msr |= MSR_DSR;
	if (s->mcr & MCR_OUT1)
		msr |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		msr |= MSR_DCD;
	return msr;
}

static uint8_t serial_lsr(struct serial *s)
{
	uint8_t lsr = s->lsr_errors;
	s->lsr_errors = 0; /* error bits clear on read */
	if (s->rx.len > 0)
		lsr |= LSR_DR;
	/* "Empty" means "has room": bytes leave at host speed, not at a baud rate. */
	if (tx_has_room(s))
		lsr |= LSR_THRE | LSR_TEMT;
	return lsr;
}

static uint8_t serial_read_rbr(struct serial *s)
{
	if (s->rx.len == 0)
		return 0;
	bool was_full = s->rx.len == s->rx.cap;
	uint8_t b = ring_get(&s->rx);
	if (was_full)
		serial_notify(s);
	return b;
}

static void serial_loopback_byte(struct serial *s, uint8_t b)
{
	if (s->rx.len < s->rx.cap)
		ring_put(&s->rx, b);
	else
		s->lsr_errors |= LSR_OE;
}

static void serial_write_thr(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		serial_loopback_byte(s, b);
		return;
	}
	/* Back-pressure: a writer that ignores THRE waits here for the backend. */
	while (!tx_has_room(s) && !s->shut_down)
		pthread_cond_wait(&s->tx_room, &s->lock);
	if (s->shut_down)
		return;
	bool was_empty = s->tx.len == 0;
	ring_put(&s->tx, b);
	if (was_empty)
		serial_notify(s);
	s->thr_ipending = tx_has_room(s);
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg)
{
	bool dlab = s->lcr & LCR_DLAB;
	switch (reg) {
	case REG_RBR_THR:
		return dlab ? s->dll : serial_read_rbr(s);
	case REG_IER:
		return dlab ? s->dlm : s->ier;
	case REG_IIR_FCR: {
		uint8_t iir = serial_iir(s);
		if ((iir & 0x0f) == IIR_THRI)
			s->thr_ipending = false; /* reading IIR acknowledges THRE */
		return iir;
	}
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return serial_lsr(s);
	case REG_MSR:
		return serial_msr(s);
	default:
		return s->scr;
	}
}

static void serial_write_ier(struct serial *s, uint8_t v)
{
	uint8_t old = s->ier;
	s->ier = v & (IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
	/* Enabling THRE while the transmitter has room raises it at once. */
	if ((s->ier & IER_THRI) && !(old & IER_THRI) && tx_has_room(s))
		s->thr_ipending = true;
}

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;
	switch (reg) {
	case REG_RBR_THR:
		if (dlab)
			s->dll = v;
		else
			serial_write_thr(s, v);
		break;
	case REG_IER:
		if (dlab)
			s->dlm = v;
		else
			serial_write_ier(s, v);
		break;
	case REG_IIR_FCR:
		s->fifo_enabled = v & FCR_ENABLE;
		if (v & FCR_CLEAR_RX) {
			bool was_full = s->rx.len == s->rx.cap;
			s->rx.head = s->rx.len = 0;
			if (was_full)
				serial_notify(s);
		}
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & 0x1f;
		break;
	case REG_SCR:
		s->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
}

static void serial_io_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	struct serial *s = dev;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < len; i++)
		data[i] = offset + i < SERIAL_PORT_COUNT ? serial_read_reg(s, (unsigned)(offset + i)) : 0xff;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_io_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct serial *s = dev;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < len; i++)
		if (offset + i < SERIAL_PORT_COUNT)
			serial_write_reg(s, (unsigned)(offset + i), data[i]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

const struct io_ops serial_io_ops = {
	.read = serial_io_read,
	.write = serial_io_write,
};

struct serial *serial_create(struct irq_line irq, size_t tx_capacity)
{
	struct serial *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->irq = irq;
	s->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->notify_fd < 0 || !ring_init(&s->tx, tx_capacity ? tx_capacity : SERIAL_TX_QUEUE) ||
	    !ring_init(&s->rx, SERIAL_RX_QUEUE)) {
		serial_destroy(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->tx_room, NULL);
	return s;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	if (s->tx.buf && s->rx.buf) {
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->tx_room);
	}
	if (s->notify_fd >= 0)
		close(s->notify_fd);
	free(s->tx.buf);
	free(s->rx.buf);
	free(s);
}

int serial_notify_fd(struct serial *s)
{
	return s->notify_fd;
}

void serial_notify_ack(struct serial *s)
{
	uint64_t v;
	ssize_t r = read(s->notify_fd, &v, sizeof(v));
	(void)r;
}

size_t serial_tx_peek(struct serial *s, uint8_t *buf, size_t max)
{
	pthread_mutex_lock(&s->lock);
	size_t n = ring_peek(&s->tx, buf, max);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_tx_consume(struct serial *s, size_t n)
{
	pthread_mutex_lock(&s->lock);
	bool was_full = !tx_has_room(s);
	if (n > s->tx.len)
		n = s->tx.len;
	s->tx.head = (s->tx.head + n) % s->tx.cap;
	s->tx.len -= n;
	if (was_full && n > 0) {
		s->thr_ipending = true;
		pthread_cond_broadcast(&s->tx_room);
		serial_update_irq(s);
	}
	pthread_mutex_unlock(&s->lock);
}

size_t serial_tx_pending(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->tx.len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_rx_space(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->rx.cap - s->rx.len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_rx_push(struct serial *s, const uint8_t *data, size_t n)
{
	pthread_mutex_lock(&s->lock);
	size_t taken = 0;
	while (taken < n && s->rx.len < s->rx.cap)
		ring_put(&s->rx, data[taken++]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return taken;
}

void serial_shutdown(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->shut_down = true;
	pthread_cond_broadcast(&s->tx_room);
	pthread_mutex_unlock(&s->lock);
}

/*
 * A 16550A UART (COM1). The guest side is the register file on eight I/O
 * ports; the host side is a pair of byte queues that the console backend
 * (vmm/console.c) drains and fills from its own thread:
 *
 *  - output is never lost: the transmit queue is bounded, and while it is
 *    full the UART reports "transmitter busy" (LSR.THRE clear) so an
 *    interrupt-driven driver waits for the THRE interrupt; a polling writer
 *    that writes anyway blocks its vCPU until the backend makes room;
 *  - input is taken only as fast as the guest reads it (back-pressure to
 *    the host side through serial_rx_space()).
 *
 * serial_notify_fd() becomes readable when output is waiting or when input
 * space was freed.
 */
#ifndef SHOJI_DEV_SERIAL_H
#define SHOJI_DEV_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "dev/dev.h"

#define SERIAL_PORT_COUNT 8
#define SERIAL_TX_QUEUE   (64 * 1024)
#define SERIAL_RX_QUEUE   4096

struct serial;

extern const struct io_ops serial_io_ops;

/* tx_capacity 0 means SERIAL_TX_QUEUE. NULL if out of memory or fds. */
struct serial *serial_create(struct irq_line irq, size_t tx_capacity);
void serial_destroy(struct serial *s);

int serial_notify_fd(struct serial *s);
/* Clears the notification; call before draining. */
void serial_notify_ack(struct serial *s);

/* Copies up to `max` pending output bytes without removing them. */
size_t serial_tx_peek(struct serial *s, uint8_t *buf, size_t max);
/* Removes `n` bytes the backend has delivered; may raise THRE. */
void serial_tx_consume(struct serial *s, size_t n);
size_t serial_tx_pending(struct serial *s);

size_t serial_rx_space(struct serial *s);
/* Queues input for the guest; returns how many bytes were taken. */
size_t serial_rx_push(struct serial *s, const uint8_t *data, size_t n);

/*
 * The sink is gone for good (machine stopping): release any vCPU waiting
 * for room and drop further output.
 */
void serial_shutdown(struct serial *s);

#endif

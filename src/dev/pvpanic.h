/*
 * pvpanic on PCI (1b36:0011, as QEMU defines it and Linux's pvpanic-pci
 * drives it): one byte at offset 0 of BAR 0. Reading it gives the events
 * the host understands; the guest writes an event there from its panic
 * path (PANICKED) or when a crash kernel is loaded (CRASH_LOADED).
 */
#ifndef SHOJI_DEV_PVPANIC_H
#define SHOJI_DEV_PVPANIC_H

#include <stdbool.h>
#include <stdint.h>

#include "dev/pci.h"

#define PVPANIC_EVENT_PANICKED     0x01
#define PVPANIC_EVENT_CRASH_LOADED 0x02

struct pvpanic {
	/* Called on the vCPU thread with the events the guest wrote (never 0). */
	void (*on_event)(void *ctx, uint8_t events);
	void *ctx;
};

extern const struct io_ops pvpanic_io_ops;

/* Puts the device on the bus; `pv` must outlive the bus. */
bool pvpanic_attach(struct pvpanic *pv, struct pci_bus *bus);

#endif

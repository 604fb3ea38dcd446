/*
 * A PCI host bridge with one bus (bus 0, function 0 of up to 32 slots),
 * configuration space reachable through ports 0xCF8/0xCFC and through ECAM
 * (memory-mapped, announced to the guest in the ACPI MCFG table).
 *
 * Devices get memory BARs assigned by the VMM from the PCI window in the
 * MMIO hole; the guest may size and move them as on real hardware. All BAR
 * accesses arrive through one MMIO range and are matched against the BARs'
 * current addresses under a read lock, so moving a BAR never races with an
 * access in flight on another vCPU.
 */
#ifndef SHOJI_DEV_PCI_H
#define SHOJI_DEV_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dev/bus.h"
#include "dev/dev.h"
#include "hv/layout.h"

#define PCI_SLOTS     32
#define PCI_CFG_SIZE  256
#define PCI_NUM_BARS  6

struct pci_bar {
	uint64_t addr;           /* current guest address, as programmed */
	uint64_t size;           /* power of two, >= 4096; 0 = unused */
	const struct io_ops *ops;
	void *dev;
};

struct pci_device_info {
	uint16_t vendor_id, device_id;
	uint16_t subsystem_vendor_id, subsystem_id;
	uint32_t class_code;     /* base class << 16 | subclass << 8 | prog-if */
	uint8_t revision;
	const char *name;
};

struct pci_device;

/* Called after the guest wrote config space at [offset, offset+len). */
typedef void (*pci_config_hook)(void *dev, uint32_t offset, uint32_t len);

struct pci_device {
	struct pci_bus *bus;
	unsigned slot;
	const char *name;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];   /* bits the guest may change */
	uint8_t cap_end;               /* first free byte for capabilities */
	uint8_t cap_last;              /* offset of the last capability, 0 if none */
	struct pci_bar bar[PCI_NUM_BARS];
	pci_config_hook on_config_write;
	void *dev;
	unsigned intx_gsi;             /* 0 until pci_enable_intx() */
	bool intx_asserted;
};

struct pci_bus {
	pthread_rwlock_t lock;
	struct pci_device *slot[PCI_SLOTS];
	unsigned count;
	uint32_t config_address;       /* port 0xCF8 */
	uint64_t mmio_next;            /* next free address in the BAR window */
	/* Byte accesses to 0xCF9 inside the config ports: the reset register. */
	const struct io_ops *port_cf9_ops;
	void *port_cf9_dev;
	/*
	 * INTx lines, shared: slots s and s + 8 drive the same GSI, and the
	 * interrupt controller sees one level per GSI, so a line is high while
	 * any device on it asserts (counted under intx_lock).
	 */
	pthread_mutex_t intx_lock;
	unsigned intx_count[LAYOUT_PCI_INTX_GSI_COUNT];
	struct irq_line intx_out;      /* .gsi unused: each call names its GSI */
};

extern const struct io_ops pci_config_port_ops; /* ports 0xCF8-0xCFF */
extern const struct io_ops pci_ecam_ops;        /* LAYOUT_PCI_ECAM_ADDR */
extern const struct io_ops pci_mmio_ops;        /* the BAR window */

/* Creates the bus with its host bridge in slot 0. */
bool pci_bus_init(struct pci_bus *bus);
void pci_bus_destroy(struct pci_bus *bus);

/*
 * Registers the bus's port, ECAM and BAR-window ranges. Port 0xCF9 sits
 * inside the config ports, as on PC chipsets: a byte access to it goes to
 * `cf9_ops` (the reset control register), a dword access to 0xCF8 is PCI's.
 */
bool pci_bus_attach(struct pci_bus *bus, struct bus *pio, struct bus *mmio,
		    const struct io_ops *cf9_ops, void *cf9_dev);

/* A new device in the next free slot; NULL when the bus is full. */
struct pci_device *pci_add_device(struct pci_bus *bus, const struct pci_device_info *info,
				  void *dev);

/* A 32-bit memory BAR of `size` bytes (power of two), placed by the VMM. */
bool pci_add_bar(struct pci_device *pd, unsigned index, uint64_t size,
		 const struct io_ops *ops, void *dev);

/*
 * Appends a capability (cap[0] is its ID; cap[1], the next pointer, is
 * filled in) and returns its offset in config space, 0 when it does not fit.
 * The bytes are read-only to the guest unless pci_cfg_set_wmask() says so.
 */
uint8_t pci_add_capability(struct pci_device *pd, const void *cap, uint8_t len);
void pci_cfg_set_wmask(struct pci_device *pd, uint32_t offset, const void *mask, uint32_t len);

/* Whether the guest enabled memory decoding / bus mastering for the device. */
bool pci_memory_enabled(const struct pci_device *pd);
bool pci_bus_master_enabled(const struct pci_device *pd);

/* Where the bus's INTx lines go: set(ctx, gsi, level) (the interrupt controller). */
void pci_bus_set_intx_sink(struct pci_bus *bus, void (*set)(void *ctx, unsigned gsi, int level),
			   void *ctx);
/*
 * INTx: gives the device interrupt pin INTA (LAYOUT_PCI_INTX_GSI of its
 * slot, also put in the Interrupt Line register) and returns that GSI.
 */
unsigned pci_enable_intx(struct pci_device *pd);
/* Whether the guest set Interrupt Disable in the command register. */
bool pci_intx_disabled(const struct pci_device *pd);
/*
 * The device asserts or releases its INTA: the status register's Interrupt
 * Status follows, and the shared line changes when the first device on it
 * asserts or the last one releases. Repeating the same state is a no-op.
 */
void pci_set_intx(struct pci_device *pd, bool asserted);

/* Config space access by (slot, offset), as both mechanisms do it. */
void pci_config_read(struct pci_bus *bus, unsigned slot, uint32_t offset, uint8_t *data, unsigned len);
void pci_config_write(struct pci_bus *bus, unsigned slot, uint32_t offset, const uint8_t *data, unsigned len);

#endif

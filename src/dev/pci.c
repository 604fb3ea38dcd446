/*
 * PCI host bridge, bus 0 (see pci.h). Config space follows the PCI Local
 * Bus 3.0 type-0 header; writes go through a per-byte write mask, so
 * read-only fields stay read-only whatever the guest writes, and BAR
 * sizing (write all ones, read back) falls out of the mask.
 */
#include "dev/pci.h"

#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "hv/layout.h"

#define PCI_VENDOR_REDHAT        0x1b36
#define PCI_DEVICE_HOST_BRIDGE   0x0008
#define PCI_CLASS_HOST_BRIDGE    0x060000
#define CFG_ADDRESS_ENABLE       0x80000000u
#define FIRST_CAPABILITY         0x40

static struct pci_device *pci_new_device(struct pci_bus *bus, const struct pci_device_info *info,
					 void *dev)
{
	if (bus->count == PCI_SLOTS)
		return NULL;
	struct pci_device *pd = calloc(1, sizeof(*pd));
	if (!pd)
		return NULL;
	pd->bus = bus;
	pd->slot = bus->count;
	pd->name = info->name;
	pd->dev = dev;
	pd->cap_end = FIRST_CAPABILITY;
	le_store(pd->cfg + PCI_VENDOR_ID, info->vendor_id, 2);
	le_store(pd->cfg + PCI_DEVICE_ID, info->device_id, 2);
	le_store(pd->cfg + PCI_REVISION_ID, info->revision, 1);
	le_store(pd->cfg + PCI_CLASS_PROG, info->class_code, 3);
	le_store(pd->cfg + PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL, 1);
	le_store(pd->cfg + PCI_SUBSYSTEM_VENDOR_ID, info->subsystem_vendor_id, 2);
	le_store(pd->cfg + PCI_SUBSYSTEM_ID, info->subsystem_id, 2);
	/* The guest may switch I/O, memory decoding, bus mastering and INTx off. */
	le_store(pd->wmask + PCI_COMMAND,
		PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE, 2);
	pd->wmask[PCI_INTERRUPT_LINE] = 0xff; /* scratch for the OS */
	bus->slot[bus->count++] = pd;
	return pd;
}

bool pci_bus_init(struct pci_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
	if (pthread_rwlock_init(&bus->lock, NULL) != 0)
		return false;
	pthread_mutex_init(&bus->intx_lock, NULL);
	bus->mmio_next = LAYOUT_PCI_MMIO_START;
	static const struct pci_device_info host = {
		.vendor_id = PCI_VENDOR_REDHAT,
		.device_id = PCI_DEVICE_HOST_BRIDGE,
		.subsystem_vendor_id = PCI_VENDOR_REDHAT,
		.class_code = PCI_CLASS_HOST_BRIDGE,
		.name = "host bridge",
	};
	if (!pci_new_device(bus, &host, NULL)) {
		pci_bus_destroy(bus);
		return false;
	}
	return true;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	for (unsigned i = 0; i < bus->count; i++)
		free(bus->slot[i]);
	bus->count = 0;
	pthread_rwlock_destroy(&bus->lock);
	pthread_mutex_destroy(&bus->intx_lock);
}

struct pci_device *pci_add_device(struct pci_bus *bus, const struct pci_device_info *info,
				  void *dev)
{
	pthread_rwlock_wrlock(&bus->lock);
	struct pci_device *pd = pci_new_device(bus, info, dev);
	pthread_rwlock_unlock(&bus->lock);
	if (!pd)
		log_error("PCI bus is full: cannot add %s", info->name);
	return pd;
}

bool pci_add_bar(struct pci_device *pd, unsigned index, uint64_t size,
		 const struct io_ops *ops, void *dev)
{
	struct pci_bus *bus = pd->bus;
	if (index >= PCI_NUM_BARS || size < 4096 || (size & (size - 1)) || pd->bar[index].size)
		return false;
	uint64_t addr = (bus->mmio_next + size - 1) & ~(size - 1);
	if (addr + size > LAYOUT_PCI_MMIO_START + LAYOUT_PCI_MMIO_SIZE) {
		log_error("PCI window full: cannot place a %llu KiB BAR for %s",
			  (unsigned long long)(size >> 10), pd->name);
		return false;
	}
	bus->mmio_next = addr + size;
	pd->bar[index] = (struct pci_bar){ addr, size, ops, dev };
	uint32_t off = PCI_BASE_ADDRESS_0 + 4 * index;
	le_store(pd->cfg + off, (uint32_t)addr | PCI_BASE_ADDRESS_MEM_TYPE_32, 4);
	le_store(pd->wmask + off, (uint32_t)~(size - 1), 4);
	return true;
}

uint8_t pci_add_capability(struct pci_device *pd, const void *cap, uint8_t len)
{
	if (len < 2 || pd->cap_end + len > PCI_CFG_SIZE)
		return 0;
	uint8_t at = pd->cap_end;
	memcpy(&pd->cfg[at], cap, len);
	pd->cfg[at + PCI_CAP_LIST_NEXT] = 0;
	if (pd->cap_last)
		pd->cfg[pd->cap_last + PCI_CAP_LIST_NEXT] = at;
	else
		pd->cfg[PCI_CAPABILITY_LIST] = at;
	pd->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	pd->cap_last = at;
	pd->cap_end = (uint8_t)((at + len + 3) & ~3);
	return at;
}

void pci_cfg_set_wmask(struct pci_device *pd, uint32_t offset, const void *mask, uint32_t len)
{
	if (offset < PCI_CFG_SIZE && len <= PCI_CFG_SIZE - offset)
		memcpy(&pd->wmask[offset], mask, len);
}

bool pci_memory_enabled(const struct pci_device *pd)
{
	return pd->cfg[PCI_COMMAND] & PCI_COMMAND_MEMORY;
}

bool pci_bus_master_enabled(const struct pci_device *pd)
{
	return pd->cfg[PCI_COMMAND] & PCI_COMMAND_MASTER;
}

_Static_assert(PCI_SLOTS == LAYOUT_PCI_SLOTS, "the DSDT's _PRT covers every slot");

void pci_bus_set_intx_sink(struct pci_bus *bus, void (*set)(void *ctx, unsigned gsi, int level),
			   void *ctx)
{
	bus->intx_out = (struct irq_line){ .set = set, .ctx = ctx };
}

unsigned pci_enable_intx(struct pci_device *pd)
{
	unsigned gsi = LAYOUT_PCI_INTX_GSI(pd->slot);
	pd->cfg[PCI_INTERRUPT_PIN] = 1; /* INTA */
	pd->cfg[PCI_INTERRUPT_LINE] = (uint8_t)gsi;
	pd->intx_gsi = gsi;
	return gsi;
}

bool pci_intx_disabled(const struct pci_device *pd)
{
	return le_load(pd->cfg + PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE;
}

void pci_set_intx(struct pci_device *pd, bool asserted)
{
	struct pci_bus *bus = pd->bus;
	if (!pd->intx_gsi || asserted == pd->intx_asserted)
		return;
	unsigned line = pd->intx_gsi - LAYOUT_PCI_INTX_GSI_BASE;
	/* The count and the level it gives change together, or two devices'
	 * updates could reach the controller in the other order. */
	pthread_mutex_lock(&bus->intx_lock);
	pd->intx_asserted = asserted;
	if (asserted)
		pd->cfg[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
	else
		pd->cfg[PCI_STATUS] &= (uint8_t)~PCI_STATUS_INTERRUPT;
	unsigned before = bus->intx_count[line];
	bus->intx_count[line] = asserted ? before + 1 : before - 1;
	if ((before == 0) != (bus->intx_count[line] == 0) && bus->intx_out.set)
		bus->intx_out.set(bus->intx_out.ctx, pd->intx_gsi, asserted);
	pthread_mutex_unlock(&bus->intx_lock);
}

static void pci_update_bars(struct pci_device *pd)
{
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		if (pd->bar[i].size)
			pd->bar[i].addr = (uint32_t)le_load(pd->cfg + PCI_BASE_ADDRESS_0 + 4 * i, 4) &
					  (uint32_t)PCI_BASE_ADDRESS_MEM_MASK;
}

void pci_config_read(struct pci_bus *bus, unsigned slot, uint32_t offset, uint8_t *data, unsigned len)
{
	pthread_rwlock_rdlock(&bus->lock);
	struct pci_device *pd = slot < bus->count ? bus->slot[slot] : NULL;
	for (unsigned i = 0; i < len; i++) {
		uint32_t o = offset + i;
		/* No device reads all ones; extended config space (ECAM) reads zero. */
		data[i] = !pd ? 0xff : o < PCI_CFG_SIZE ? pd->cfg[o] : 0;
	}
	pthread_rwlock_unlock(&bus->lock);
}

void pci_config_write(struct pci_bus *bus, unsigned slot, uint32_t offset, const uint8_t *data, unsigned len)
{
	pthread_rwlock_wrlock(&bus->lock);
	struct pci_device *pd = slot < bus->count ? bus->slot[slot] : NULL;
	bool touched = false;
	for (unsigned i = 0; pd && i < len; i++) {
		uint32_t o = offset + i;
		if (o >= PCI_CFG_SIZE)
			break;
		/* Read-only bytes are not stored back: the status register's
		 * Interrupt Status changes under the INTx lock, not this one. */
		if (pd->wmask[o])
			pd->cfg[o] = (uint8_t)((pd->cfg[o] & ~pd->wmask[o]) | (data[i] & pd->wmask[o]));
		touched = true;
	}
	if (touched) {
		pci_update_bars(pd);
		if (pd->on_config_write)
			pd->on_config_write(pd->dev, offset, len);
	}
	pthread_rwlock_unlock(&bus->lock);
}

/* Ports 0xCF8-0xCFF: the address register, then the data window. */
static bool pci_port_is_cf9(const struct pci_bus *bus, uint64_t offset, unsigned len)
{
	return offset == 1 && len == 1 && bus->port_cf9_ops;
}

static void pci_port_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct pci_bus *bus = opaque;
	if (pci_port_is_cf9(bus, offset, len)) {
		bus->port_cf9_ops->read(bus->port_cf9_dev, 0, data, len);
		return;
	}
	if (offset == 0 && len == 4) {
		le_store(data, __atomic_load_n(&bus->config_address, __ATOMIC_RELAXED), 4);
		return;
	}
	uint32_t addr = __atomic_load_n(&bus->config_address, __ATOMIC_RELAXED);
	/* Only bus 0, function 0 exists; anything else reads as absent. */
	if (offset < 4 || !(addr & CFG_ADDRESS_ENABLE) || (addr & 0x00ff0700u)) {
		memset(data, 0xff, len);
		return;
	}
	pci_config_read(bus, (addr >> 11) & 31, (addr & 0xfc) + (uint32_t)(offset - 4), data, len);
}

static void pci_port_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct pci_bus *bus = opaque;
	if (pci_port_is_cf9(bus, offset, len)) {
		bus->port_cf9_ops->write(bus->port_cf9_dev, 0, data, len);
		return;
	}
	if (offset < 4) {
		/* Only a full dword at 0xCF8 sets the address (byte writes probe it). */
		if (offset == 0 && len == 4) {
			uint32_t v = (uint32_t)le_load(data, 4);
			__atomic_store_n(&bus->config_address, v & 0x80fffffcu, __ATOMIC_RELAXED);
		}
		return;
	}
	uint32_t addr = __atomic_load_n(&bus->config_address, __ATOMIC_RELAXED);
	if (!(addr & CFG_ADDRESS_ENABLE) || (addr & 0x00ff0700u))
		return;
	pci_config_write(bus, (addr >> 11) & 31, (addr & 0xfc) + (uint32_t)(offset - 4), data, len);
}

const struct io_ops pci_config_port_ops = {
	.read = pci_port_read,
	.write = pci_port_write,
};

/* ECAM: bus 0, 4 KiB per function: offset = slot << 15 | function << 12 | register. */
static bool ecam_decode(uint64_t offset, unsigned len, unsigned *slot, uint32_t *reg)
{
	unsigned fn = (offset >> 12) & 7;
	*slot = (offset >> 15) & 31;
	*reg = offset & 0xfff;
	return fn == 0 && *reg + len <= 0x1000;
}

static void pci_ecam_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	unsigned slot;
	uint32_t reg;
	if (!ecam_decode(offset, len, &slot, &reg))
		memset(data, 0xff, len);
	else
		pci_config_read(opaque, slot, reg, data, len);
}

static void pci_ecam_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	unsigned slot;
	uint32_t reg;
	if (ecam_decode(offset, len, &slot, &reg))
		pci_config_write(opaque, slot, reg, data, len);
}

const struct io_ops pci_ecam_ops = {
	.read = pci_ecam_read,
	.write = pci_ecam_write,
};

/* The BAR that holds [gpa, gpa+len) on a device with decoding on, under the read lock. */
static const struct pci_bar *pci_find_bar(struct pci_bus *bus, uint64_t gpa, unsigned len)
{
	for (unsigned s = 0; s < bus->count; s++) {
		struct pci_device *pd = bus->slot[s];
		if (!pci_memory_enabled(pd))
			continue;
		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &pd->bar[i];
			if (b->size && gpa >= b->addr && gpa - b->addr <= b->size - len)
				return b;
		}
	}
	return NULL;
}

static void pci_mmio_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct pci_bus *bus = opaque;
	uint64_t gpa = LAYOUT_PCI_MMIO_START + offset;
	pthread_rwlock_rdlock(&bus->lock);
	const struct pci_bar *b = pci_find_bar(bus, gpa, len);
	if (b)
		b->ops->read(b->dev, gpa - b->addr, data, len);
	else
		memset(data, 0xff, len);
	pthread_rwlock_unlock(&bus->lock);
}

static void pci_mmio_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct pci_bus *bus = opaque;
	uint64_t gpa = LAYOUT_PCI_MMIO_START + offset;
	pthread_rwlock_rdlock(&bus->lock);
	const struct pci_bar *b = pci_find_bar(bus, gpa, len);
	if (b)
		b->ops->write(b->dev, gpa - b->addr, data, len);
	pthread_rwlock_unlock(&bus->lock);
}

const struct io_ops pci_mmio_ops = {
	.read = pci_mmio_read,
	.write = pci_mmio_write,
};

bool pci_bus_attach(struct pci_bus *bus, struct bus *pio, struct bus *mmio,
		    const struct io_ops *cf9_ops, void *cf9_dev)
{
	bus->port_cf9_ops = cf9_ops;
	bus->port_cf9_dev = cf9_dev;
	return bus_add(mmio, LAYOUT_PCI_ECAM_ADDR, LAYOUT_PCI_ECAM_SIZE, &pci_ecam_ops, bus, "PCI ECAM") &&
	       bus_add(mmio, LAYOUT_PCI_MMIO_START, LAYOUT_PCI_MMIO_SIZE, &pci_mmio_ops, bus, "PCI BARs") &&
	       bus_add(pio, PORT_PCI_CONFIG, 8, &pci_config_port_ops, bus, "PCI config ports");
}

/*
 * libFuzzer target: the virtio 1.x PCI transport (src/dev/virtio-pci.c) and
 * the PCI configuration space behind it (src/dev/pci.c), driven as a hostile
 * driver would: accesses of every width to BAR 0 (common configuration, ISR,
 * device configuration, notification area, MSI-X table and PBA), config
 * space through ECAM and through ports 0xCF8/0xCFC, kicks from the I/O
 * thread, and writes to guest RAM that build rings. Two devices sit on one
 * bus: the real virtio-rng, and a stub with three queues, a device config,
 * one vCPU-served queue, that completes every chain and checks what the
 * transport promises a device (dev/virtio.h).
 *
 * Input layout:
 *   byte 0      number of records n
 *   n * 7 bytes records: op, offset (LE16), value (LE32), where op is
 *                 bits 0-2  kind (see enum rec_kind)
 *                 bits 3-4  access width 1, 2, 4 or 8 bytes
 *                 bit  5    the device: 0 virtio-rng, 1 the stub
 *   the rest    guest RAM from gpa 0 on (up to 64 KiB): rings and buffers
 * Queue addresses, sizes and everything else come from the records, so
 * rings may lie outside RAM, straddle its end or overlap each other.
 *
 * Checks (abort on failure): ASan/UBSan for any access outside RAM or the
 * transport's tables; the stub is called only as dev/virtio.h says (config
 * accesses inside config_size, queue work only between activate() and
 * reset(), on an existing queue, with offered features only); a status
 * write of 0 resets the device to status 0; an MSI is sent only while the
 * driver lets the function master the bus.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>

#include "base/log.h"
#include "base/util.h"
#include "dev/pci.h"
#include "dev/virtio-pci.h"
#include "dev/virtio-rng.h"
#include "dev/virtio.h"
#include "hv/mem.h"

#define RAM_SIZE     (1u << 20)
#define RAM_FROM_INPUT 0x10000u    /* the input's tail goes here */
#define RAM_RECORDS  (0x10000u * 4) /* what REC_RAM_WRITE reaches */
#define REC_LEN      7
#define STUB_QUEUES  3
#define STUB_QMAX    64
#define STUB_CFG     12
#define STUB_VCPU_Q  1u            /* the queue the stub serves on vCPU threads */

enum rec_kind {
	REC_BAR_READ,
	REC_BAR_WRITE,
	REC_ECAM_READ,
	REC_ECAM_WRITE,
	REC_PORT,        /* 0xCF8-0xCFF: offset bits 0-2 the port, bit 3 read */
	REC_IO_KICK,     /* virtio_pci_kick() as the I/O thread does on an eventfd */
	REC_IO_TURN,     /* virtio_pci_poll() and the kicks asked for later */
	REC_RAM_WRITE,   /* the value at gpa offset * 4 */
};

/* ---- the stub device ---- */

struct stub {
	struct virtio_dev *vd;
	bool active;
	uint8_t cfg[STUB_CFG];
	int event_fd;
	uint32_t vcpu_ready;
};

static uint64_t stub_features(void *dev)
{
	(void)dev;
	return VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT) | VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT) |
	       VIRTIO_FEATURE(3);
}

static void stub_config_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct stub *s = dev;
	if (off > STUB_CFG || len > STUB_CFG - off)
		abort(); /* the transport checks offsets against config_size */
	memcpy(data, &s->cfg[off], len);
}

static void stub_config_write(void *dev, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct stub *s = dev;
	if (off > STUB_CFG || len > STUB_CFG - off)
		abort();
	memcpy(&s->cfg[off], data, len);
}

static void stub_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	struct stub *s = dev;
	uint64_t offered = stub_features(dev) | VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT);
	if (s->active || (features & ~offered))
		abort(); /* activated twice without a reset, or given unoffered features */
	s->active = true;
	s->vd = vd;
}

/* Completes every available chain with its writable length. */
static void stub_serve(struct stub *s, struct virtio_dev *vd, unsigned queue)
{
	if (!s->active || vd != s->vd || queue >= STUB_QUEUES)
		abort(); /* queue work outside activate() .. reset(), or no such queue */
	struct vq *vq = virtio_queue(vd, queue);
	if (!vq)
		abort();
	static struct vq_chain chain;
	unsigned served = 0;
	for (;;) {
		if (served >= VIRTIO_QUEUE_BUDGET) {
			virtio_queue_notify_later(vd, queue);
			break;
		}
		enum vq_pop_result r = vq_pop(vq, &chain);
		if (r == VQ_BROKEN) {
			virtio_needs_reset(vd, vq->why_broken);
			break;
		}
		if (r == VQ_EMPTY)
			break;
		vq_push(vq, chain.head, (uint32_t)chain.writable_len);
		served++;
	}
	if (served)
		virtio_queue_interrupt(vd, queue);
	if (served % 3 == 1)
		virtio_config_changed(vd); /* now and then, a config interrupt too */
}

/* The vCPU path leaves a completion for virtio_pci_poll(). */
static void stub_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			      enum virtio_path path)
{
	struct stub *s = dev;
	if (path == VIRTIO_ON_VCPU) {
		if (queue != STUB_VCPU_Q)
			abort(); /* only the queue the stub named goes this way */
		s->vcpu_ready ^= 1u << queue;
	}
	stub_serve(s, vd, queue);
}

static void stub_queue_info(void *dev, unsigned queue, struct virtio_queue_info *info)
{
	const struct stub *s = dev;
	if (queue == STUB_VCPU_Q) {
		info->serve = VIRTIO_SERVE_VCPU;
		info->wake_fd[0] = s->event_fd;
	}
}

static bool stub_vcpu_work_done(void *dev, unsigned queue)
{
	const struct stub *s = dev;
	return s->vcpu_ready & (1u << queue);
}

static void stub_reset(void *dev)
{
	/*
	 * Also called for a device never activated: a driver that sets
	 * DRIVER_OK while NEEDS_RESET is pending gets the bit without an
	 * activate(), and the reset that follows calls reset() (virtio-pci.c,
	 * write_status/virtio_reset). dev/virtio.h does not forbid it and the
	 * devices' reset() are idempotent, so it is allowed here.
	 */
	struct stub *s = dev;
	s->active = false;
	s->vcpu_ready = 0;
}

static const struct virtio_device_ops stub_ops = {
	.name = "fuzz-stub",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = STUB_QUEUES,
	.queue_max_size = STUB_QMAX,
	.config_size = STUB_CFG,
	.features = stub_features,
	.config_read = stub_config_read,
	.config_write = stub_config_write,
	.activate = stub_activate,
	.queue_notify = stub_queue_notify,
	.reset = stub_reset,
	.queue_info = stub_queue_info,
	.vcpu_work_done = stub_vcpu_work_done,
};

/* ---- the machine: guest RAM, a bus, the host services per device ---- */

struct fdev {
	struct virtio_dev *vd;
	struct pci_device *pci;    /* its function on the bus */
	uint32_t later;            /* queues kick_later() asked for */
};

static struct guest_mem mem;
static struct pci_bus pbus;
static struct fdev devs[2];   /* [0] virtio-rng, [1] the stub */
static struct stub stub;
static struct virtio_rng *rng;

static void host_send_msi(void *ctx, uint64_t addr, uint32_t data)
{
	(void)addr, (void)data;
	const struct fdev *d = ctx;
	if (!d->vd || !pci_bus_master_enabled(d->pci))
		abort(); /* an MSI is a DMA write: never without bus mastering */
}

static bool host_set_ioeventfd(void *ctx, struct virtio_dev *vd, unsigned queue, uint64_t gpa, bool on)
{
	(void)ctx, (void)vd, (void)queue, (void)gpa, (void)on;
	return true; /* kicks arrive as REC_IO_KICK records */
}

static void host_kick_later(void *ctx, struct virtio_dev *vd, unsigned queue)
{
	struct fdev *d = ctx;
	if (vd != d->vd || queue >= 32)
		abort();
	d->later |= 1u << queue;
}

static bool machine_start(void)
{
	if (!pci_bus_init(&pbus))
		return false;
	for (unsigned i = 0; i < 2; i++) {
		struct virtio_pci_host host = {
			.send_msi = host_send_msi, .set_ioeventfd = host_set_ioeventfd,
			.kick_later = host_kick_later, .ctx = &devs[i],
		};
		devs[i].later = 0;
		devs[i].vd = i == 0 ? virtio_pci_create(&pbus, &mem, &virtio_rng_ops, rng, &host)
				    : virtio_pci_create(&pbus, &mem, &stub_ops, &stub, &host);
		if (!devs[i].vd)
			abort();
		devs[i].pci = pbus.slot[pbus.count - 1]; /* the function just added */
	}
	return true;
}

static void machine_stop(void)
{
	for (unsigned i = 0; i < 2; i++) {
		virtio_pci_destroy(devs[i].vd);
		devs[i].vd = NULL;
	}
	if (stub.active)
		abort(); /* destroying the transport resets a running device */
	pci_bus_destroy(&pbus);
}

static void setup_once(void)
{
	log_init("fuzz-virtio-pci", LOG_LEVEL_ERROR);
	log_set_level((enum log_level)-1);
	if (!guest_mem_alloc(&mem, RAM_SIZE))
		abort();
	rng = virtio_rng_create();
	stub.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!rng || stub.event_fd < 0)
		abort();
}

/* ---- one record ---- */

/* The device's slot: slot 0 is the host bridge, then the devices in order. */
static unsigned slot_of(unsigned dev)
{
	return devs[dev].pci->slot;
}

/* The device status as the driver reads it (a read without side effects). */
static uint8_t device_status(struct fdev *d)
{
	uint8_t status;
	virtio_pci_bar_ops.read(d->vd, offsetof(struct virtio_pci_common_cfg, device_status), &status, 1);
	return status;
}

static void bar_access(struct fdev *d, bool write, uint16_t off, uint64_t value, unsigned len)
{
	uint8_t b[8];
	uint64_t at = off % (VIRTIO_PCI_BAR_SIZE - len + 1); /* the bus keeps accesses inside */
	if (!write) {
		virtio_pci_bar_ops.read(d->vd, at, b, len);
		return;
	}
	le_store(b, value, len);
	virtio_pci_bar_ops.write(d->vd, at, b, len);
	/* A reset is immediate: the driver reads status 0 right after writing it. */
	if (at == offsetof(struct virtio_pci_common_cfg, device_status) && len == 1 && value % 256 == 0 &&
	    device_status(d) != 0)
		abort();
	if (d == &devs[1] && device_status(d) == 0 && stub.active)
		abort();
}

static void ecam_access(unsigned dev, bool write, uint16_t off, uint64_t value, unsigned len)
{
	uint8_t b[8];
	/* Any register of the device's function, or of function 1 (absent). */
	uint64_t at = (uint64_t)slot_of(dev) << 15 | (off & 0x1fffu);
	if (len > 4)
		len = 4; /* config space is reached with at most dword accesses */
	if (!write) {
		pci_ecam_ops.read(&pbus, at, b, len);
		return;
	}
	le_store(b, value, len);
	pci_ecam_ops.write(&pbus, at, b, len);
}

static void port_access(unsigned dev, uint16_t off, uint32_t value, unsigned len)
{
	uint8_t b[4];
	unsigned port = off & 7;
	if (len > 4)
		len = 4;
	if (port + len > 8)
		port = 8 - len; /* the bus keeps accesses inside the range */
	if (off & 8) {
		pci_config_port_ops.read(&pbus, port, b, len);
		return;
	}
	/* Address writes mostly aim at the device (the fuzzer finds the rest). */
	if (port == 0 && len == 4 && (off & 16))
		value = 0x80000000u | slot_of(dev) << 11 | (value & 0xfc);
	le_store(b, value, len);
	pci_config_port_ops.write(&pbus, port, b, len);
}

static void io_turn(struct fdev *d)
{
	virtio_pci_poll(d->vd);
	uint32_t later = d->later;
	d->later = 0;
	for (unsigned q = 0; q < 32; q++)
		if (later & (1u << q))
			virtio_pci_kick(d->vd, q);
}

static void run_record(const uint8_t *r)
{
	enum rec_kind kind = r[0] & 7;
	unsigned len = 1u << ((r[0] >> 3) & 3);
	unsigned dev = (r[0] >> 5) & 1;
	uint16_t off = (uint16_t)(r[1] | r[2] << 8);
	uint32_t v32 = (uint32_t)le_load(&r[3], 4);
	uint64_t value = (uint64_t)v32 << 32 | v32;
	struct fdev *d = &devs[dev];
	switch (kind) {
	case REC_BAR_READ: bar_access(d, false, off, value, len); break;
	case REC_BAR_WRITE: bar_access(d, true, off, value, len); break;
	case REC_ECAM_READ: ecam_access(dev, false, off, value, len); break;
	case REC_ECAM_WRITE: ecam_access(dev, true, off, value, len); break;
	case REC_PORT: port_access(dev, off, v32, len); break;
	case REC_IO_KICK: virtio_pci_kick(d->vd, off % 32u); break;
	case REC_IO_TURN: io_turn(d); break;
	case REC_RAM_WRITE: le_store(guest_mem_ptr(&mem, (uint64_t)off * 4, 4), v32, 4); break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!mem.count)
		setup_once();
	if (size < 1)
		return 0;
	size_t n = data[0];
	if (size < 1 + n * REC_LEN)
		n = (size - 1) / REC_LEN;
	const uint8_t *ram_part = data + 1 + n * REC_LEN;
	size_t ram_len = size - 1 - n * REC_LEN;
	uint8_t *ram = guest_mem_ptr(&mem, 0, RAM_SIZE);
	memset(ram, 0, RAM_RECORDS); /* covers RAM_FROM_INPUT too */
	memcpy(ram, ram_part, ram_len < RAM_FROM_INPUT ? ram_len : RAM_FROM_INPUT);
	memset(stub.cfg, 0, sizeof(stub.cfg));
	if (!machine_start())
		return 0;
	for (size_t i = 0; i < n; i++)
		run_record(data + 1 + i * REC_LEN);
	machine_stop();
	return 0;
}

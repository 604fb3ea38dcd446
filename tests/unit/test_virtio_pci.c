/*
 * The PCI host bridge (src/dev/pci.c) and the virtio 1.x modern PCI
 * transport (src/dev/virtio-pci.c) driven by a simulated guest driver in this
 * process, through the same doors a guest uses: ports 0xCF8/0xCFC and ECAM
 * for configuration space, and BAR 0 through the PCI window that the machine
 * registers (pci_bus_attach() on real `struct bus` address spaces). Guest RAM
 * is real (16 MiB, no KVM); the machine's two services (MSI delivery and
 * ioeventfd routing) are a fake host that records every call, and the device
 * is a small test device of our own (and virtio-rng once).
 *
 * Covered: IDs, class and revision of both functions by CF8/CFC and ECAM,
 * absent slots/functions/buses; BAR sizing, moving and memory decode; the
 * capability list; read-only config bytes; feature negotiation and what it
 * refuses; status rules; queue setup checks and freezing; MSI-X vector
 * bounds, delivery, masking and the PBA; ISR read-and-clear; device reset;
 * odd access widths; the 0xCF9 reset register inside the config ports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>

#include "dev/bus.h"
#include "dev/pci.h"
#include "dev/virtio-pci.h"
#include "dev/virtio-rng.h"
#include "dev/virtio.h"
#include "hv/kvm.h"
#include "hv/layout.h"
#include "hv/mem.h"
#include "vmm/iothread.h"
#include "vmm/virtio-host.h"

#define RAM_SIZE     (16u << 20)
#define RING_GPA(q)  (0x10000u + (q) * 0x10000u)  /* desc; avail +0x1000; used +0x2000 */
#define BUF_GPA      0x100000u
#define VSLOT        1            /* the test device; slot 0 is the host bridge */
#define TDEV_QUEUES  2
#define TDEV_QMAX    64
#define TDEV_CFG     8
#define TDEV_F_A     3            /* device feature bits offered */
#define TDEV_F_B     5
#define TDEV_F_NOT   7            /* never offered */
#define NVEC         (TDEV_QUEUES + 1)
#define MSI_ADDR     0xfee00000u
#define CC(field)    ((uint32_t)offsetof(struct virtio_pci_common_cfg, field))

static struct guest_mem mem;

/* ---- the test device ---- */

struct tdev {
	unsigned activations, resets, notifies;
	unsigned vcpu_notifies;     /* queue_notify calls on the vCPU path */
	uint32_t vcpu_ready;        /* what vcpu_work_done reports, a bit per queue */
	unsigned last_queue;
	uint64_t features;
	uint8_t cfg[TDEV_CFG];
	unsigned cfg_reads, cfg_writes;
};

static struct tdev td;

static uint64_t tdev_features(void *dev)
{
	(void)dev;
	return VIRTIO_FEATURE(TDEV_F_A) | VIRTIO_FEATURE(TDEV_F_B) |
	       VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
}

/* A config read that holds the transport's lock until released, to stand
 * for another thread (the I/O thread's batch) in the lock. */
static struct {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool armed, inside, release;
} hold = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false };

static void hold_in_config_read(void)
{
	pthread_mutex_lock(&hold.m);
	if (hold.armed) {
		hold.inside = true;
		pthread_cond_broadcast(&hold.c);
		while (!hold.release)
			pthread_cond_wait(&hold.c, &hold.m);
	}
	pthread_mutex_unlock(&hold.m);
}

static void tdev_config_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	hold_in_config_read();
	struct tdev *t = dev;
	t->cfg_reads++;
	memcpy(data, &t->cfg[off], len);
}

static void tdev_config_write(void *dev, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct tdev *t = dev;
	t->cfg_writes++;
	memcpy(&t->cfg[off], data, len);
}

static void tdev_activate(void *dev, struct virtio_dev *vd, uint64_t features)
{
	(void)vd;
	struct tdev *t = dev;
	t->activations++;
	t->features = features;
}

/* Completes every available chain with its writable length, then
 * interrupts; counts the calls of each path apart. */
static void tdev_queue_notify(void *dev, struct virtio_dev *vd, unsigned queue,
			      enum virtio_path path)
{
	struct tdev *t = dev;
	static struct vq_chain chain;
	if (path == VIRTIO_ON_VCPU) {
		t->vcpu_notifies++;
		t->vcpu_ready &= ~(1u << queue);
	} else {
		t->notifies++;
	}
	t->last_queue = queue;
	struct vq *vq = virtio_queue(vd, queue);
	bool pushed = false;
	for (;;) {
		enum vq_pop_result r = vq_pop(vq, &chain);
		if (r == VQ_BROKEN) {
			virtio_needs_reset(vd, vq->why_broken);
			return;
		}
		if (r == VQ_EMPTY)
			break;
		vq_push(vq, chain.head, (uint32_t)chain.writable_len);
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(vd, queue);
}

static bool tdev_vcpu_work_done(void *dev, unsigned queue)
{
	const struct tdev *t = dev;
	return t->vcpu_ready & (1u << queue);
}

static void tdev_reset(void *dev)
{
	struct tdev *t = dev;
	t->resets++;
}

static const struct virtio_device_ops tdev_ops = {
	.name = "test-dev",
	.device_id = VIRTIO_ID_NET, /* for its class code (network controller) */
	.num_queues = TDEV_QUEUES,
	.queue_max_size = TDEV_QMAX,
	.config_size = TDEV_CFG,
	.features = tdev_features,
	.config_read = tdev_config_read,
	.config_write = tdev_config_write,
	.activate = tdev_activate,
	.queue_notify = tdev_queue_notify,
	.reset = tdev_reset,
};

/* ---- the fake host: MSIs and ioeventfds, recorded ---- */

#define REC_MAX 64

struct fake_host {
	struct { uint64_t addr; uint32_t data; } msi[REC_MAX];
	unsigned nmsi;
	struct { struct virtio_dev *vd; unsigned queue; uint64_t gpa; bool on; } io[REC_MAX];
	unsigned nio;
	unsigned irq_gsi, irq_changes; /* INTx: the last GSI set and how often */
	int irq_level;
	/* When set, ioeventfds go to KVM through this VM (unrecorded), as the
	 * machine's glue does; a VM whose fd is -1 fails every one. */
	struct kvm_vm *kvm;
	/* kick_later() calls: the queues the I/O thread would kick again. */
	struct virtio_dev *later_vd;
	uint32_t later_queues;
	unsigned nlater;
};

static struct fake_host fh;

static void fh_send_msi(void *ctx, uint64_t addr, uint32_t data)
{
	struct fake_host *h = ctx;
	assert_true(h->nmsi < REC_MAX);
	h->msi[h->nmsi].addr = addr;
	h->msi[h->nmsi].data = data;
	h->nmsi++;
}

static bool fh_set_ioeventfd(void *ctx, struct virtio_dev *vd, unsigned queue, uint64_t gpa, bool on)
{
	struct fake_host *h = ctx;
	if (h->kvm)
		return kvm_vm_ioeventfd(h->kvm, gpa, 2, -1, on);
	assert_true(h->nio < REC_MAX);
	h->io[h->nio].vd = vd;
	h->io[h->nio].queue = queue;
	h->io[h->nio].gpa = gpa;
	h->io[h->nio].on = on;
	h->nio++;
	return true;
}

static void fh_kick_later(void *ctx, struct virtio_dev *vd, unsigned queue)
{
	struct fake_host *h = ctx;
	h->later_vd = vd;
	h->later_queues |= 1u << queue;
	h->nlater++;
}

/* One turn of the I/O thread: the kicks asked for since the last one. */
static unsigned fh_run_later(void)
{
	uint32_t queues = fh.later_queues;
	fh.later_queues = 0;
	unsigned kicked = 0;
	for (unsigned q = 0; q < 32; q++)
		if (queues & (1u << q)) {
			virtio_pci_kick(fh.later_vd, q);
			kicked++;
		}
	return kicked;
}

static void fh_set_irq(void *ctx, unsigned gsi, int level)
{
	struct fake_host *h = ctx;
	h->irq_gsi = gsi;
	h->irq_level = level;
	h->irq_changes++;
}

static const struct virtio_pci_host fake_host_ops = {
	.send_msi = fh_send_msi, .set_ioeventfd = fh_set_ioeventfd, .kick_later = fh_kick_later,
	.ctx = &fh,
};

/* ---- the fake reset control register at 0xCF9 ---- */

struct fake_cf9 {
	unsigned reads, writes;
	uint64_t last_offset;
	unsigned last_len;
	uint8_t last_value;
};

static struct fake_cf9 cf9;

static void cf9_read(void *dev, uint64_t off, uint8_t *data, unsigned len)
{
	struct fake_cf9 *c = dev;
	c->reads++;
	c->last_offset = off;
	c->last_len = len;
	memset(data, 0x42, len);
}

static void cf9_write(void *dev, uint64_t off, const uint8_t *data, unsigned len)
{
	struct fake_cf9 *c = dev;
	c->writes++;
	c->last_offset = off;
	c->last_len = len;
	c->last_value = data[0];
}

static const struct io_ops cf9_ops = { cf9_read, cf9_write };

/* ---- the machine: one bus, its address spaces, one device ---- */

static struct pci_bus pbus;
static struct bus pio, mmio;
static struct virtio_dev *vd;
static uint64_t bar;        /* where the driver believes BAR 0 is */
static uint8_t msix_cap;    /* found by walking the list */

/* ---- the simulated driver: raw accesses ---- */

static uint32_t get_le(const uint8_t *b, unsigned len)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < len && i < 4; i++)
		v |= (uint32_t)b[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *b, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		b[i] = (uint8_t)(v >> (8 * (i % 8)));
}

static uint32_t drv_mmio_read(uint64_t gpa, unsigned len)
{
	uint8_t b[8];
	bus_read(&mmio, gpa, b, len);
	return get_le(b, len);
}

static void drv_mmio_write(uint64_t gpa, uint64_t v, unsigned len)
{
	uint8_t b[8];
	put_le(b, v, len);
	bus_write(&mmio, gpa, b, len);
}

static uint32_t drv_port_read(uint16_t port, unsigned len)
{
	uint8_t b[4];
	bus_read(&pio, port, b, len);
	return get_le(b, len);
}

static void drv_port_write(uint16_t port, uint32_t v, unsigned len)
{
	uint8_t b[4];
	put_le(b, v, len);
	bus_write(&pio, port, b, len);
}

/* Configuration mechanism #1: address at 0xCF8, data at 0xCFC-0xCFF. */
static uint32_t drv_cf8_addr(unsigned busn, unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | busn << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t drv_cf8_read_at(unsigned busn, unsigned slot, unsigned fn, unsigned reg, unsigned len)
{
	drv_port_write(PORT_PCI_CONFIG, drv_cf8_addr(busn, slot, fn, reg), 4);
	return drv_port_read((uint16_t)(PORT_PCI_CONFIG + 4 + (reg & 3)), len);
}

static uint32_t drv_cf8_read(unsigned slot, unsigned reg, unsigned len)
{
	return drv_cf8_read_at(0, slot, 0, reg, len);
}

static void drv_cf8_write(unsigned slot, unsigned reg, uint32_t v, unsigned len)
{
	drv_port_write(PORT_PCI_CONFIG, drv_cf8_addr(0, slot, 0, reg), 4);
	drv_port_write((uint16_t)(PORT_PCI_CONFIG + 4 + (reg & 3)), v, len);
}

/* ECAM: bus 0, slot << 15 | function << 12 | register. */
static uint64_t drv_ecam_gpa(unsigned slot, unsigned fn, unsigned reg)
{
	return LAYOUT_PCI_ECAM_ADDR + ((uint64_t)slot << 15 | fn << 12 | reg);
}

static uint32_t drv_ecam_read(unsigned slot, unsigned fn, unsigned reg, unsigned len)
{
	return drv_mmio_read(drv_ecam_gpa(slot, fn, reg), len);
}

static void drv_ecam_write(unsigned slot, unsigned reg, uint32_t v, unsigned len)
{
	drv_mmio_write(drv_ecam_gpa(slot, 0, reg), v, len);
}

/* The test device's config space (through ECAM). */
static uint32_t drv_cfg_read(unsigned reg, unsigned len) { return drv_ecam_read(VSLOT, 0, reg, len); }
static void drv_cfg_write(unsigned reg, uint32_t v, unsigned len) { drv_ecam_write(VSLOT, reg, v, len); }

static uint32_t drv_bar_read(uint32_t off, unsigned len) { return drv_mmio_read(bar + off, len); }
static void drv_bar_write(uint32_t off, uint64_t v, unsigned len) { drv_mmio_write(bar + off, v, len); }

static uint32_t drv_common_read(uint32_t off, unsigned len) { return drv_bar_read(VIRTIO_PCI_COMMON_OFF + off, len); }
static void drv_common_write(uint32_t off, uint32_t v, unsigned len) { drv_bar_write(VIRTIO_PCI_COMMON_OFF + off, v, len); }

static uint8_t drv_status(void) { return (uint8_t)drv_common_read(CC(device_status), 1); }
static void drv_set_status(uint8_t s) { drv_common_write(CC(device_status), s, 1); }

/* ---- the simulated driver: bring-up steps ---- */

static void drv_enable_memory(bool on)
{
	drv_cfg_write(PCI_COMMAND, on ? PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER : 0, 2);
}

static void drv_move_bar(uint32_t addr)
{
	drv_cfg_write(PCI_BASE_ADDRESS_0, addr, 4);
	bar = addr;
}

/* Offset of the first capability with `id` (and vendor cfg_type if id is VNDR), 0 if none. */
static uint8_t drv_find_cap(unsigned slot, uint8_t id, uint8_t cfg_type)
{
	uint8_t at = (uint8_t)drv_ecam_read(slot, 0, PCI_CAPABILITY_LIST, 1);
	for (unsigned hops = 0; at && hops < 48; hops++) {
		if (drv_ecam_read(slot, 0, at, 1) == id &&
		    (id != PCI_CAP_ID_VNDR || drv_ecam_read(slot, 0, at + 3u, 1) == cfg_type))
			return at;
		at = (uint8_t)drv_ecam_read(slot, 0, at + 1u, 1);
	}
	return 0;
}

static void drv_write_features(uint64_t f)
{
	drv_common_write(CC(guest_feature_select), 0, 4);
	drv_common_write(CC(guest_feature), (uint32_t)f, 4);
	drv_common_write(CC(guest_feature_select), 1, 4);
	drv_common_write(CC(guest_feature), (uint32_t)(f >> 32), 4);
}

static uint64_t drv_read_features(bool device)
{
	uint32_t sel = device ? CC(device_feature_select) : CC(guest_feature_select);
	uint32_t val = device ? CC(device_feature) : CC(guest_feature);
	drv_common_write(sel, 0, 4);
	uint64_t lo = drv_common_read(val, 4);
	drv_common_write(sel, 1, 4);
	return lo | (uint64_t)drv_common_read(val, 4) << 32;
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; true when the device kept FEATURES_OK. */
static bool drv_negotiate(uint64_t features)
{
	drv_set_status(0);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	drv_write_features(features);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	return drv_status() & VIRTIO_CONFIG_S_FEATURES_OK;
}

static void drv_queue_program(unsigned q, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	drv_common_write(CC(queue_select), q, 2);
	drv_common_write(CC(queue_size), size, 2);
	drv_common_write(CC(queue_desc_lo), (uint32_t)desc, 4);
	drv_common_write(CC(queue_desc_hi), (uint32_t)(desc >> 32), 4);
	drv_common_write(CC(queue_avail_lo), (uint32_t)avail, 4);
	drv_common_write(CC(queue_avail_hi), (uint32_t)(avail >> 32), 4);
	drv_common_write(CC(queue_used_lo), (uint32_t)used, 4);
	drv_common_write(CC(queue_used_hi), (uint32_t)(used >> 32), 4);
}

static bool drv_queue_enable(unsigned q)
{
	drv_common_write(CC(queue_select), q, 2);
	drv_common_write(CC(queue_enable), 1, 2);
	return drv_common_read(CC(queue_enable), 2) == 1;
}

static void drv_msix_flags(uint16_t flags)
{
	drv_cfg_write(msix_cap + PCI_MSIX_FLAGS, flags, 2);
}

static void drv_msix_entry(unsigned v, uint32_t addr, uint32_t data, bool masked)
{
	uint32_t e = VIRTIO_PCI_MSIX_OFF + 16 * v;
	drv_bar_write(e + PCI_MSIX_ENTRY_LOWER_ADDR, addr, 4);
	drv_bar_write(e + PCI_MSIX_ENTRY_UPPER_ADDR, 0, 4);
	drv_bar_write(e + PCI_MSIX_ENTRY_DATA, data, 4);
	drv_bar_write(e + PCI_MSIX_ENTRY_VECTOR_CTRL, masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0, 4);
}

static uint32_t msi_data(unsigned v) { return 0x4040u + v; }

/*
 * What Linux's virtio_pci_modern does: memory on, MSI-X on with vector 0 for
 * configuration changes and vector 1+q for queue q, features, queues, DRIVER_OK.
 */
static void drv_bring_up(void)
{
	drv_enable_memory(true);
	drv_msix_flags(PCI_MSIX_FLAGS_ENABLE);
	for (unsigned v = 0; v < NVEC; v++)
		drv_msix_entry(v, MSI_ADDR + 0x1000 * v, msi_data(v), false);
	assert_true(drv_negotiate(VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT) | VIRTIO_FEATURE(TDEV_F_A)));
	drv_common_write(CC(msix_config), 0, 2);
	for (unsigned q = 0; q < TDEV_QUEUES; q++) {
		drv_queue_program(q, TDEV_QMAX, RING_GPA(q), RING_GPA(q) + 0x1000, RING_GPA(q) + 0x2000);
		drv_common_write(CC(queue_msix_vector), 1 + q, 2);
		assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), 1 + q);
		assert_true(drv_queue_enable(q));
	}
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* Puts one device-writable buffer of `len` bytes in queue q (size TDEV_QMAX). */
static void drv_publish(unsigned q, uint16_t head, uint32_t len)
{
	struct vring_desc *d = guest_mem_ptr(&mem, RING_GPA(q), vq_desc_bytes(TDEV_QMAX));
	uint16_t *avail = guest_mem_ptr(&mem, RING_GPA(q) + 0x1000, vq_avail_bytes(TDEV_QMAX));
	d[head] = (struct vring_desc){ BUF_GPA + head * 0x1000u, len, VRING_DESC_F_WRITE, 0 };
	avail[2 + avail[1] % TDEV_QMAX] = head;
	__atomic_store_n(&avail[1], (uint16_t)(avail[1] + 1), __ATOMIC_RELEASE);
}

static uint16_t drv_used_idx(unsigned q)
{
	uint16_t *used = guest_mem_ptr(&mem, RING_GPA(q) + 0x2000, 4);
	return used[1];
}

/* The way Linux kicks: a 16-bit write of the queue index at its notify address. */
static void drv_kick(unsigned q)
{
	drv_common_write(CC(queue_select), q, 2);
	uint32_t off = drv_common_read(CC(queue_notify_off), 2);
	drv_bar_write(VIRTIO_PCI_NOTIFY_OFF + off * VIRTIO_PCI_NOTIFY_MULT, q, 2);
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
	(void)state;
	return guest_mem_alloc(&mem, RAM_SIZE) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	guest_mem_free(&mem);
	return 0;
}

static int setup_with(const struct virtio_device_ops *ops)
{
	memset(guest_mem_ptr(&mem, 0, 2u << 20), 0, 2u << 20);
	memset(&td, 0, sizeof(td));
	memset(&fh, 0, sizeof(fh));
	memset(&cf9, 0, sizeof(cf9));
	for (unsigned i = 0; i < TDEV_CFG; i++)
		td.cfg[i] = (uint8_t)(0xa0 + i);
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	if (!pci_bus_init(&pbus) || !pci_bus_attach(&pbus, &pio, &mmio, &cf9_ops, &cf9))
		return -1;
	pci_bus_set_intx_sink(&pbus, fh_set_irq, &fh);
	vd = virtio_pci_create(&pbus, &mem, ops, &td, &fake_host_ops);
	if (!vd)
		return -1;
	bar = drv_cfg_read(PCI_BASE_ADDRESS_0, 4) & PCI_BASE_ADDRESS_MEM_MASK;
	msix_cap = drv_find_cap(VSLOT, PCI_CAP_ID_MSIX, 0);
	return msix_cap ? 0 : -1;
}

static int setup(void **state)
{
	(void)state;
	return setup_with(&tdev_ops);
}

/* The test device with queue 1 served on the vCPU thread (as vsock's tx). */
static struct virtio_device_ops tdev_vcpu_ops;

static void tdev_vcpu_queue_info(void *dev, unsigned queue, struct virtio_queue_info *info)
{
	(void)dev;
	if (queue == 1)
		info->serve = VIRTIO_SERVE_VCPU;
}

static int setup_vcpu_notify(void **state)
{
	(void)state;
	tdev_vcpu_ops = tdev_ops;
	tdev_vcpu_ops.queue_info = tdev_vcpu_queue_info;
	return setup_with(&tdev_vcpu_ops);
}

static int teardown(void **state)
{
	(void)state;
	virtio_pci_destroy(vd);
	pci_bus_destroy(&pbus);
	return 0;
}

/* ---- identity and enumeration ---- */

static void test_ids_through_cf8_and_ecam(void **state)
{
	(void)state;
	/* Host bridge: Red Hat 1b36:0008, class 06:00:00, revision 0. */
	assert_int_equal(drv_cf8_read(0, PCI_VENDOR_ID, 4), 0x00081b36);
	assert_int_equal(drv_ecam_read(0, 0, PCI_VENDOR_ID, 4), 0x00081b36);
	assert_int_equal(drv_cf8_read(0, PCI_CLASS_REVISION, 4), 0x06000000);
	assert_int_equal(drv_ecam_read(0, 0, PCI_CLASS_REVISION, 4), 0x06000000);
	assert_int_equal(drv_cf8_read(0, PCI_HEADER_TYPE, 1), PCI_HEADER_TYPE_NORMAL);

	/* The device: 1af4:(1040 + device id), network class, revision 1. */
	assert_int_equal(drv_cf8_read(VSLOT, PCI_VENDOR_ID, 4), 0x10411af4);
	assert_int_equal(drv_ecam_read(VSLOT, 0, PCI_VENDOR_ID, 4), 0x10411af4);
	assert_int_equal(drv_cf8_read(VSLOT, PCI_CLASS_REVISION, 4), 0x02000001);
	assert_int_equal(drv_ecam_read(VSLOT, 0, PCI_CLASS_REVISION, 4), 0x02000001);
	assert_int_equal(drv_cf8_read(VSLOT, PCI_REVISION_ID, 1), 1);
	assert_int_equal(drv_ecam_read(VSLOT, 0, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x10411af4);
	/* Narrow reads through the data window pick the right bytes. */
	assert_int_equal(drv_cf8_read(VSLOT, PCI_DEVICE_ID, 2), 0x1041);
	assert_int_equal(drv_cf8_read(VSLOT, PCI_VENDOR_ID + 1, 1), 0x1a);
	assert_int_equal(drv_cf8_read(VSLOT, PCI_CLASS_DEVICE + 1, 1), 0x02);

	/* 0xCF8 reads back what was written, reserved bits 24-30 and bits 0-1 as zero. */
	drv_port_write(PORT_PCI_CONFIG, drv_cf8_addr(0, VSLOT, 0, 0x10) | 0x7f000003u, 4);
	assert_int_equal(drv_port_read(PORT_PCI_CONFIG, 4), drv_cf8_addr(0, VSLOT, 0, 0x10));
	assert_int_equal(drv_port_read(PORT_PCI_CONFIG + 4, 4), (uint32_t)LAYOUT_PCI_MMIO_START);

	/* Absent: empty slots, functions 1-7, other buses, enable bit clear. */
	for (unsigned slot = 2; slot < 32; slot += 5) {
		assert_int_equal(drv_cf8_read(slot, PCI_VENDOR_ID, 4), 0xffffffff);
		assert_int_equal(drv_ecam_read(slot, 0, PCI_VENDOR_ID, 4), 0xffffffff);
	}
	for (unsigned fn = 1; fn < 8; fn++) {
		assert_int_equal(drv_cf8_read_at(0, VSLOT, fn, PCI_VENDOR_ID, 4), 0xffffffff);
		assert_int_equal(drv_ecam_read(VSLOT, fn, PCI_VENDOR_ID, 4), 0xffffffff);
		assert_int_equal(drv_ecam_read(0, fn, PCI_VENDOR_ID, 2), 0xffff);
	}
	assert_int_equal(drv_cf8_read_at(1, 0, 0, PCI_VENDOR_ID, 4), 0xffffffff);
	assert_int_equal(drv_cf8_read_at(255, VSLOT, 0, PCI_VENDOR_ID, 4), 0xffffffff);
	drv_port_write(PORT_PCI_CONFIG, 0, 4);
	assert_int_equal(drv_port_read(PORT_PCI_CONFIG + 4, 4), 0xffffffff);
	/* Extended config space of a present function reads zero (no extended caps). */
	assert_int_equal(drv_ecam_read(VSLOT, 0, 0x100, 4), 0);
	/* Writes to absent functions go nowhere (and do not land on function 0). */
	drv_port_write(PORT_PCI_CONFIG, drv_cf8_addr(0, VSLOT, 1, PCI_COMMAND), 4);
	drv_port_write(PORT_PCI_CONFIG + 4, PCI_COMMAND_MEMORY, 2);
	drv_port_write(PORT_PCI_CONFIG, drv_cf8_addr(1, VSLOT, 0, PCI_COMMAND), 4);
	drv_port_write(PORT_PCI_CONFIG + 4, PCI_COMMAND_MEMORY, 2);
	drv_mmio_write(drv_ecam_gpa(VSLOT, 3, PCI_COMMAND), PCI_COMMAND_MEMORY, 2);
	assert_int_equal(drv_cfg_read(PCI_COMMAND, 2), 0);
}

static void test_bar_sizing_move_and_decode(void **state)
{
	(void)state;
	/* The VMM placed BAR 0 first in the window, 32 KiB aligned, 32-bit memory. */
	uint32_t b0 = drv_cfg_read(PCI_BASE_ADDRESS_0, 4);
	assert_int_equal(b0, (uint32_t)LAYOUT_PCI_MMIO_START);
	assert_int_equal(b0 & ~PCI_BASE_ADDRESS_MEM_MASK, PCI_BASE_ADDRESS_MEM_TYPE_32);

	/* Sizing: all ones reads back ~(size - 1); unused BARs stay zero. */
	drv_cfg_write(PCI_BASE_ADDRESS_0, 0xffffffff, 4);
	assert_int_equal(drv_cfg_read(PCI_BASE_ADDRESS_0, 4), (uint32_t)~(VIRTIO_PCI_BAR_SIZE - 1));
	for (unsigned i = 1; i < PCI_NUM_BARS; i++) {
		drv_cfg_write(PCI_BASE_ADDRESS_0 + 4 * i, 0xffffffff, 4);
		assert_int_equal(drv_cfg_read(PCI_BASE_ADDRESS_0 + 4 * i, 4), 0);
	}
	drv_cfg_write(PCI_BASE_ADDRESS_0, b0, 4);
	assert_int_equal(drv_cfg_read(PCI_BASE_ADDRESS_0, 4), b0);

	/* Memory decoding starts off: nothing answers at the BAR. */
	assert_int_equal(drv_common_read(CC(num_queues), 2), 0xffff);
	drv_enable_memory(true);
	assert_int_equal(drv_common_read(CC(num_queues), 2), TDEV_QUEUES);

	/* Move it; the low bits of the address are not writable. */
	uint64_t old = bar;
	drv_move_bar(0xd0000000u | 0x7ff0);
	bar = 0xd0000000u;
	assert_int_equal(drv_cfg_read(PCI_BASE_ADDRESS_0, 4), 0xd0000000u);
	assert_int_equal(drv_common_read(CC(num_queues), 2), TDEV_QUEUES);
	assert_int_equal(drv_mmio_read(old + CC(num_queues), 2), 0xffff);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE);
	/* A write at the old address reaches nothing (a reset there would clear status). */
	drv_mmio_write(old + CC(device_status), 0, 1);
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE);

	/* Decoding off: no access either way. */
	drv_enable_memory(false);
	assert_int_equal(drv_common_read(CC(num_queues), 2), 0xffff);
	drv_set_status(0);
	drv_enable_memory(true);
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE);
}

/* Checks one virtio vendor capability: BAR 0, offset, at least `min_len` bytes. */
static void check_virtio_cap(unsigned slot, uint8_t type, uint32_t offset, uint32_t min_len)
{
	uint8_t at = drv_find_cap(slot, PCI_CAP_ID_VNDR, type);
	assert_true(at >= 0x40);
	assert_int_equal(at % 4, 0);
	assert_true(drv_ecam_read(slot, 0, at + 2u, 1) >= sizeof(struct virtio_pci_cap));
	assert_int_equal(drv_ecam_read(slot, 0, at + offsetof(struct virtio_pci_cap, bar), 1), 0);
	assert_int_equal(drv_ecam_read(slot, 0, at + offsetof(struct virtio_pci_cap, offset), 4), offset);
	assert_true(drv_ecam_read(slot, 0, at + offsetof(struct virtio_pci_cap, length), 4) >= min_len);
}

static void check_caps(unsigned slot, unsigned queues, uint32_t config_size)
{
	assert_true(drv_ecam_read(slot, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	check_virtio_cap(slot, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF,
			 sizeof(struct virtio_pci_common_cfg));
	check_virtio_cap(slot, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 1);
	if (config_size)
		check_virtio_cap(slot, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF, config_size);
	else
		assert_int_equal(drv_find_cap(slot, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_DEVICE_CFG), 0);
	check_virtio_cap(slot, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF, queues * 4);
	uint8_t n = drv_find_cap(slot, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_NOTIFY_CFG);
	assert_true(drv_ecam_read(slot, 0, n + 2u, 1) >= sizeof(struct virtio_pci_notify_cap));
	assert_int_equal(drv_ecam_read(slot, 0, n + offsetof(struct virtio_pci_notify_cap, notify_off_multiplier), 4),
			 VIRTIO_PCI_NOTIFY_MULT);

	uint8_t m = drv_find_cap(slot, PCI_CAP_ID_MSIX, 0);
	assert_true(m >= 0x40);
	uint32_t flags = drv_ecam_read(slot, 0, m + PCI_MSIX_FLAGS, 2);
	assert_int_equal((flags & PCI_MSIX_FLAGS_QSIZE) + 1, queues + 1);
	assert_int_equal(flags & (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL), 0);
	assert_int_equal(drv_ecam_read(slot, 0, m + PCI_MSIX_TABLE, 4), VIRTIO_PCI_MSIX_OFF | 0);
	assert_int_equal(drv_ecam_read(slot, 0, m + PCI_MSIX_PBA, 4), VIRTIO_PCI_PBA_OFF | 0);
}

static void test_capability_list(void **state)
{
	(void)state;
	/* The walk ends: every next pointer moves forward and the last is 0. */
	uint8_t at = (uint8_t)drv_cfg_read(PCI_CAPABILITY_LIST, 1);
	unsigned count = 0;
	while (at) {
		assert_true(at >= 0x40);
		uint8_t next = (uint8_t)drv_cfg_read(at + 1u, 1);
		assert_true(next == 0 || next > at);
		at = next;
		count++;
	}
	assert_int_equal(count, 5); /* common, ISR, device, notify, MSI-X */
	check_caps(VSLOT, TDEV_QUEUES, TDEV_CFG);
	/* The host bridge has no capabilities. */
	assert_int_equal(drv_ecam_read(0, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);

	/* virtio-rng: one queue, no device configuration, so no device cap. */
	struct virtio_rng *rng = virtio_rng_create();
	assert_non_null(rng);
	struct virtio_dev *rvd = virtio_pci_create(&pbus, &mem, &virtio_rng_ops, rng, &fake_host_ops);
	assert_non_null(rvd);
	assert_int_equal(drv_ecam_read(2, 0, PCI_VENDOR_ID, 4), 0x10441af4);
	assert_int_equal(drv_ecam_read(2, 0, PCI_CLASS_REVISION, 4), 0xff000001);
	check_caps(2, 1, 0);
	/* Its BAR does not overlap ours. */
	uint32_t rbar = drv_ecam_read(2, 0, PCI_BASE_ADDRESS_0, 4) & PCI_BASE_ADDRESS_MEM_MASK;
	assert_true(rbar >= bar + VIRTIO_PCI_BAR_SIZE || rbar + VIRTIO_PCI_BAR_SIZE <= bar);
	virtio_pci_destroy(rvd);
	virtio_rng_destroy(rng);
}

/* Writes all ones to every dword of config space (ECAM), then checks each byte. */
static void check_read_only(unsigned slot, bool has_bar, uint8_t mcap)
{
	uint8_t before[PCI_CFG_SIZE], after[PCI_CFG_SIZE];
	for (unsigned r = 0; r < PCI_CFG_SIZE; r++)
		before[r] = (uint8_t)drv_ecam_read(slot, 0, r, 1);
	for (unsigned r = 0; r < PCI_CFG_SIZE; r += 4)
		drv_ecam_write(slot, r, 0xffffffff, 4);
	for (unsigned r = 0; r < PCI_CFG_SIZE; r++)
		after[r] = (uint8_t)drv_ecam_read(slot, 0, r, 1);
	for (unsigned r = 0; r < PCI_CFG_SIZE; r++) {
		uint8_t writable = 0;
		if (r == PCI_COMMAND)
			writable = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
		else if (r == PCI_COMMAND + 1)
			writable = PCI_COMMAND_INTX_DISABLE >> 8;
		else if (r == PCI_INTERRUPT_LINE)
			writable = 0xff;
		else if (has_bar && r >= PCI_BASE_ADDRESS_0 && r < PCI_BASE_ADDRESS_0 + 4)
			writable = (uint8_t)(~(VIRTIO_PCI_BAR_SIZE - 1) >> (8 * (r - PCI_BASE_ADDRESS_0)));
		else if (mcap && r == mcap + PCI_MSIX_FLAGS + 1u)
			writable = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
		if (after[r] != (uint8_t)((before[r] & ~writable) | writable))
			fail_msg("slot %u config byte 0x%02x: was 0x%02x, reads 0x%02x after writing ones",
				 slot, r, before[r], after[r]);
	}
}

static void test_read_only_config(void **state)
{
	(void)state;
	check_read_only(VSLOT, true, msix_cap);
	check_read_only(0, false, 0);
	/* Through the ports, at narrow widths, with zeros this time. */
	drv_cf8_write(VSLOT, PCI_VENDOR_ID, 0, 2);
	drv_cf8_write(VSLOT, PCI_CLASS_DEVICE + 1, 0, 1);
	drv_cf8_write(VSLOT, PCI_REVISION_ID, 0, 1);
	drv_cf8_write(VSLOT, PCI_CAPABILITY_LIST, 0, 1);
	drv_cf8_write(VSLOT, msix_cap + PCI_MSIX_FLAGS, 0, 1); /* table size byte */
	assert_int_equal(drv_cf8_read(VSLOT, PCI_VENDOR_ID, 4), 0x10411af4);
	assert_int_equal(drv_cf8_read(VSLOT, PCI_CLASS_REVISION, 4), 0x02000001);
	assert_true(drv_cf8_read(VSLOT, PCI_CAPABILITY_LIST, 1) >= 0x40);
	assert_int_equal(drv_cf8_read(VSLOT, msix_cap + PCI_MSIX_FLAGS, 1), TDEV_QUEUES);
}

/* ---- feature negotiation and status ---- */

static void test_device_feature_pages(void **state)
{
	(void)state;
	drv_enable_memory(true);
	drv_common_write(CC(device_feature_select), 0, 4);
	assert_int_equal(drv_common_read(CC(device_feature), 4), (uint32_t)tdev_features(NULL));
	drv_common_write(CC(device_feature_select), 1, 4);
	assert_int_equal(drv_common_read(CC(device_feature_select), 4), 1);
	assert_int_equal(drv_common_read(CC(device_feature), 4), 1u << (VIRTIO_F_VERSION_1_BIT - 32));
	drv_common_write(CC(device_feature_select), 2, 4);
	assert_int_equal(drv_common_read(CC(device_feature), 4), 0);
	drv_common_write(CC(device_feature_select), 0xffffffff, 4);
	assert_int_equal(drv_common_read(CC(device_feature), 4), 0);
	assert_int_equal(drv_common_read(CC(num_queues), 2), TDEV_QUEUES);
}

static void test_features_refused(void **state)
{
	(void)state;
	drv_enable_memory(true);
	const uint64_t v1 = VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT);
	/* A bit not offered, low page and high page. */
	assert_false(drv_negotiate(v1 | VIRTIO_FEATURE(TDEV_F_NOT)));
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	assert_false(drv_negotiate(v1 | VIRTIO_FEATURE(33)));
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	/* A legacy driver: offered bits but no VERSION_1. */
	assert_false(drv_negotiate(VIRTIO_FEATURE(TDEV_F_A)));
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	/* Setting FEATURES_OK again after a refusal does not sneak it through. */
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(drv_status() & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	/* Page 2 of the driver features does not exist. */
	drv_common_write(CC(guest_feature_select), 2, 4);
	drv_common_write(CC(guest_feature), 0xffffffff, 4);
	assert_int_equal(drv_common_read(CC(guest_feature), 4), 0);
	/* Every offered bit at once is fine. */
	uint64_t all = tdev_features(NULL) | v1;
	assert_true(drv_negotiate(all));
	assert_int_equal(drv_read_features(false), all);
	assert_int_equal(drv_read_features(true), all);
}

static void test_features_frozen_after_features_ok(void **state)
{
	(void)state;
	drv_enable_memory(true);
	const uint64_t want = VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT) | VIRTIO_FEATURE(TDEV_F_B);
	assert_true(drv_negotiate(want));
	drv_write_features(0xffffffffffffffffull);
	assert_int_equal(drv_read_features(false), want);
	drv_write_features(0);
	assert_int_equal(drv_read_features(false), want);
	/* FEATURES_OK cannot be taken back by writing a status without it. */
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
	assert_true(drv_status() & VIRTIO_CONFIG_S_FEATURES_OK);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	assert_int_equal(td.activations, 1);
	assert_int_equal(td.features, want);
}

static void test_driver_ok_without_features_ok(void **state)
{
	(void)state;
	drv_enable_memory(true);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	drv_write_features(VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT));
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
	/*
	 * Regression (fixed in 49547ba): write_status() used to overwrite the
	 * NEEDS_RESET that virtio_needs_reset() had just set, so this read 0x03.
	 */
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(td.activations, 0);
	/* The driver cannot clear NEEDS_RESET except by resetting. */
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
	assert_true(drv_status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	drv_set_status(0);
	assert_int_equal(drv_status(), 0);

	/* Same after a refused FEATURES_OK. */
	assert_false(drv_negotiate(VIRTIO_FEATURE(TDEV_F_NOT)));
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(td.activations, 0);
}

/* ---- queue setup ---- */

/* Programs queue 0 from a clean negotiated state and tries to enable it. */
static bool try_queue(uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	assert_true(drv_negotiate(VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT)));
	drv_queue_program(0, size, desc, avail, used);
	bool on = drv_queue_enable(0);
	bool needs_reset = drv_status() & VIRTIO_CONFIG_S_NEEDS_RESET;
	assert_true(on != needs_reset);
	return on;
}

static void test_queue_size_checks(void **state)
{
	(void)state;
	drv_enable_memory(true);
	const uint64_t d = RING_GPA(0), a = d + 0x1000, u = d + 0x2000;
	drv_common_write(CC(queue_select), 0, 2);
	assert_int_equal(drv_common_read(CC(queue_size), 2), TDEV_QMAX);
	assert_false(try_queue(TDEV_QMAX * 2, d, a, u));
	assert_false(try_queue(48, d, a, u));
	assert_false(try_queue(TDEV_QMAX - 1, d, a, u));
	assert_false(try_queue(0, d, a, u));
	assert_false(try_queue(0xffff, d, a, u));
	assert_true(try_queue(1, d, a, u));
	assert_true(try_queue(TDEV_QMAX / 2, d, a, u));
	assert_true(try_queue(TDEV_QMAX, d, a, u));
}

static void test_queue_ring_checks(void **state)
{
	(void)state;
	drv_enable_memory(true);
	const uint64_t d = RING_GPA(0), a = d + 0x1000, u = d + 0x2000;
	const uint16_t n = TDEV_QMAX;
	assert_false(try_queue(n, RAM_SIZE, a, u));                          /* desc above RAM */
	assert_false(try_queue(n, RAM_SIZE - vq_desc_bytes(n) + 16, a, u));  /* desc straddles the end */
	assert_false(try_queue(n, d, RAM_SIZE - 2, u));                      /* avail straddles */
	assert_false(try_queue(n, d, a, 1ull << 32));                        /* used: high half */
	assert_false(try_queue(n, LAYOUT_PCI_MMIO_START, a, u));             /* in the MMIO hole */
	assert_false(try_queue(n, d + 8, a, u));                             /* desc not 16-aligned */
	assert_false(try_queue(n, d, a + 1, u));                             /* avail not 2-aligned */
	assert_false(try_queue(n, d, a, u + 2));                             /* used not 4-aligned */
	assert_false(try_queue(n, 0xfffffffffffff000ull, a, u));             /* wraps */
	assert_true(try_queue(n, RAM_SIZE - vq_desc_bytes(n), a, u));       /* exactly at the end */
	assert_true(try_queue(n, d, a, u));
}

static void test_queue_fields_frozen_after_enable(void **state)
{
	(void)state;
	drv_enable_memory(true);
	assert_true(try_queue(TDEV_QMAX / 2, RING_GPA(0), RING_GPA(0) + 0x1000, RING_GPA(0) + 0x2000));
	drv_queue_program(0, 4, RING_GPA(1), RING_GPA(1) + 0x1000, RING_GPA(1) + 0x2000);
	drv_common_write(CC(queue_desc_hi), 1, 4);
	drv_common_write(CC(queue_enable), 0, 2);
	assert_int_equal(drv_common_read(CC(queue_size), 2), TDEV_QMAX / 2);
	assert_int_equal(drv_common_read(CC(queue_desc_lo), 4), RING_GPA(0));
	assert_int_equal(drv_common_read(CC(queue_desc_hi), 4), 0);
	assert_int_equal(drv_common_read(CC(queue_avail_lo), 4), RING_GPA(0) + 0x1000);
	assert_int_equal(drv_common_read(CC(queue_used_lo), 4), RING_GPA(0) + 0x2000);
	assert_int_equal(drv_common_read(CC(queue_enable), 2), 1);
	/* Queue 1 was not touched by any of it. */
	drv_common_write(CC(queue_select), 1, 2);
	assert_int_equal(drv_common_read(CC(queue_size), 2), TDEV_QMAX);
	assert_int_equal(drv_common_read(CC(queue_desc_lo), 4), 0);
	assert_int_equal(drv_common_read(CC(queue_enable), 2), 0);
}

static void test_queue_select_out_of_range(void **state)
{
	(void)state;
	drv_enable_memory(true);
	const uint16_t sel[] = { TDEV_QUEUES, TDEV_QUEUES + 1, VIRTIO_MAX_QUEUES, 0xffff };
	for (unsigned i = 0; i < sizeof(sel) / sizeof(sel[0]); i++) {
		drv_common_write(CC(queue_select), sel[i], 2);
		assert_int_equal(drv_common_read(CC(queue_select), 2), sel[i]);
		assert_int_equal(drv_common_read(CC(queue_size), 2), 0);
		assert_int_equal(drv_common_read(CC(queue_enable), 2), 0);
		assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), VIRTIO_MSI_NO_VECTOR);
		/* Writes to the missing queue go nowhere and break nothing. */
		drv_common_write(CC(queue_size), 8, 2);
		drv_common_write(CC(queue_desc_lo), RING_GPA(1), 4);
		drv_common_write(CC(queue_msix_vector), 1, 2);
		drv_common_write(CC(queue_enable), 1, 2);
		assert_int_equal(drv_common_read(CC(queue_size), 2), 0);
		assert_int_equal(drv_status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	}
	for (unsigned q = 0; q < TDEV_QUEUES; q++) {
		drv_common_write(CC(queue_select), q, 2);
		assert_int_equal(drv_common_read(CC(queue_size), 2), TDEV_QMAX);
		assert_int_equal(drv_common_read(CC(queue_desc_lo), 4), 0);
		assert_int_equal(drv_common_read(CC(queue_notify_off), 2), q);
	}
}

static void test_msix_vector_bounds(void **state)
{
	(void)state;
	drv_enable_memory(true);
	drv_common_write(CC(queue_select), 0, 2);
	drv_common_write(CC(queue_msix_vector), NVEC - 1, 2);
	assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), NVEC - 1);
	drv_common_write(CC(queue_msix_vector), NVEC, 2);
	assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), VIRTIO_MSI_NO_VECTOR);
	drv_common_write(CC(queue_msix_vector), 0x8000, 2);
	assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), VIRTIO_MSI_NO_VECTOR);
	drv_common_write(CC(queue_msix_vector), 0, 2);
	assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), 0);
	drv_common_write(CC(queue_msix_vector), VIRTIO_MSI_NO_VECTOR, 2);
	assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), VIRTIO_MSI_NO_VECTOR);

	drv_common_write(CC(msix_config), NVEC - 1, 2);
	assert_int_equal(drv_common_read(CC(msix_config), 2), NVEC - 1);
	drv_common_write(CC(msix_config), NVEC, 2);
	assert_int_equal(drv_common_read(CC(msix_config), 2), VIRTIO_MSI_NO_VECTOR);

	/* Table entries past the table read zero and ignore writes. */
	drv_bar_write(VIRTIO_PCI_MSIX_OFF + 16 * NVEC, 0x12345678, 4);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_MSIX_OFF + 16 * NVEC, 4), 0);
	/* Entries start masked. */
	for (unsigned v = 0; v < NVEC; v++)
		assert_int_equal(drv_bar_read(VIRTIO_PCI_MSIX_OFF + 16 * v + PCI_MSIX_ENTRY_VECTOR_CTRL, 4),
				 PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* ---- running device ---- */

static void test_bring_up_kick_and_msi(void **state)
{
	(void)state;
	drv_bring_up();
	assert_int_equal(td.activations, 1);
	assert_int_equal(td.features, VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT) | VIRTIO_FEATURE(TDEV_F_A));
	/* One eventfd per enabled queue, at its notify address. */
	assert_int_equal(fh.nio, TDEV_QUEUES);
	for (unsigned q = 0; q < TDEV_QUEUES; q++) {
		assert_ptr_equal(fh.io[q].vd, vd);
		assert_int_equal(fh.io[q].queue, q);
		assert_int_equal(fh.io[q].gpa, bar + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q);
		assert_true(fh.io[q].on);
	}
	assert_int_equal(fh.nmsi, 0);

	/* A kick through the notify register reaches queue_notify; the push sends the MSI. */
	drv_publish(1, 3, 100);
	drv_kick(1);
	assert_int_equal(td.notifies, 1);
	assert_int_equal(td.last_queue, 1);
	assert_int_equal(drv_used_idx(1), 1);
	assert_int_equal(fh.nmsi, 1);
	assert_int_equal(fh.msi[0].addr, MSI_ADDR + 0x1000 * 2);
	assert_int_equal(fh.msi[0].data, msi_data(2));

	/* The same through the eventfd path, on queue 0; a 64-bit address this time. */
	drv_bar_write(VIRTIO_PCI_MSIX_OFF + 16 * 1 + PCI_MSIX_ENTRY_UPPER_ADDR, 0x1, 4);
	drv_publish(0, 0, 16);
	virtio_pci_kick(vd, 0);
	assert_int_equal(td.notifies, 2);
	assert_int_equal(td.last_queue, 0);
	assert_int_equal(drv_used_idx(0), 1);
	assert_int_equal(fh.nmsi, 2);
	assert_int_equal(fh.msi[1].addr, (1ull << 32) | (MSI_ADDR + 0x1000));
	assert_int_equal(fh.msi[1].data, msi_data(1));

	/* Kicks for queues that do not exist go nowhere. */
	drv_bar_write(VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * TDEV_QUEUES, TDEV_QUEUES, 2);
	drv_bar_write(VIRTIO_PCI_MSIX_OFF - 4, 0, 4);
	virtio_pci_kick(vd, TDEV_QUEUES);
	virtio_pci_kick(vd, 0xffffffffu);
	assert_int_equal(td.notifies, 2);

	/* Device configuration reaches the device. */
	assert_int_equal(drv_bar_read(VIRTIO_PCI_DEVICE_OFF + 4, 4), 0xa7a6a5a4);
	drv_bar_write(VIRTIO_PCI_DEVICE_OFF + 2, 0x5a, 1);
	assert_int_equal(td.cfg[2], 0x5a);
	unsigned reads = td.cfg_reads, writes = td.cfg_writes;
	assert_int_equal(drv_bar_read(VIRTIO_PCI_DEVICE_OFF + TDEV_CFG - 2, 4), 0); /* crosses the end */
	drv_bar_write(VIRTIO_PCI_DEVICE_OFF + TDEV_CFG, 0xff, 1);
	assert_int_equal(td.cfg_reads, reads);
	assert_int_equal(td.cfg_writes, writes);
}

/* A VIRTIO_SERVE_VCPU queue gets no ioeventfd: the guest's notify write
 * itself runs queue_notify on the vCPU path (on the vCPU thread that made
 * it); the other queue keeps its eventfd. Reset detaches only what was
 * attached. */
static void test_vcpu_notify_queue(void **state)
{
	(void)state;
	drv_bring_up();
	assert_int_equal(fh.nio, 1);
	assert_int_equal(fh.io[0].queue, 0);
	assert_true(fh.io[0].on);
	drv_publish(1, 3, 100);
	drv_kick(1);
	assert_int_equal(td.vcpu_notifies, 1);
	assert_int_equal(td.notifies, 0);
	assert_int_equal(td.last_queue, 1);
	assert_int_equal(drv_used_idx(1), 1);
	assert_int_equal(fh.nmsi, 1);
	drv_set_status(0);
	assert_int_equal(fh.nio, 2);
	assert_int_equal(fh.io[1].queue, 0);
	assert_false(fh.io[1].on);
}

/* A vCPU queue's MMIO kicks take the vCPU path (an eventfd kick of the
 * same queue, as the I/O thread's hand-over sends, takes the I/O
 * thread's); virtio_pci_poll() calls it for the queues whose
 * vcpu_work_done() says so, only while they run. */
static void test_vcpu_queue_notify_and_poll(void **state)
{
	(void)state;
	tdev_vcpu_ops.vcpu_work_done = tdev_vcpu_work_done;
	drv_bring_up();
	drv_publish(1, 3, 100);
	drv_kick(1);
	assert_int_equal(td.vcpu_notifies, 1);
	assert_int_equal(td.notifies, 0);
	assert_int_equal(drv_used_idx(1), 1);
	virtio_pci_kick(vd, 1);
	assert_int_equal(td.notifies, 1);
	assert_int_equal(td.vcpu_notifies, 1);

	virtio_pci_poll(vd); /* nothing reported: nothing called */
	assert_int_equal(td.vcpu_notifies, 1);
	drv_publish(1, 4, 100);
	td.vcpu_ready = 1u << 1;
	virtio_pci_poll(vd);
	assert_int_equal(td.vcpu_notifies, 2);
	assert_int_equal(drv_used_idx(1), 2);
	/* Queue 0 is not a vCPU queue: a report for it is ignored. */
	td.vcpu_ready = 1u << 0;
	virtio_pci_poll(vd);
	assert_int_equal(td.vcpu_notifies, 2);
	/* After a reset the queue is not running. */
	drv_set_status(0);
	td.vcpu_ready = 1u << 1;
	virtio_pci_poll(vd);
	assert_int_equal(td.vcpu_notifies, 2);
}

static void *read_config_in_thread(void *arg)
{
	(void)arg;
	drv_bar_read(VIRTIO_PCI_DEVICE_OFF, 1);
	return NULL;
}

/* A vCPU's kick of a vCPU queue while another thread holds the lock does
 * not wait for it: the kick is handed to the I/O thread instead
 * (kick_later), whose kick then serves the request. */
static void test_vcpu_kick_while_locked(void **state)
{
	(void)state;
	drv_bring_up();
	drv_publish(1, 3, 100);
	hold.armed = true;
	pthread_t holder;
	assert_int_equal(pthread_create(&holder, NULL, read_config_in_thread, NULL), 0);
	pthread_mutex_lock(&hold.m);
	while (!hold.inside)
		pthread_cond_wait(&hold.c, &hold.m);
	pthread_mutex_unlock(&hold.m);

	/* The notify write alone (drv_kick also reads the common config,
	 * which waits for the lock as any config access does). The test
	 * device's notify_off is its queue index. */
	unsigned later = fh.nlater;
	drv_bar_write(VIRTIO_PCI_NOTIFY_OFF + 1 * VIRTIO_PCI_NOTIFY_MULT, 1, 2);
	assert_int_equal(td.vcpu_notifies, 0);
	assert_int_equal(td.notifies, 0);
	assert_int_equal(drv_used_idx(1), 0);
	assert_int_equal(fh.nlater, later + 1);
	assert_int_equal(fh.later_queues, 1u << 1);

	pthread_mutex_lock(&hold.m);
	hold.release = true;
	pthread_cond_broadcast(&hold.c);
	pthread_mutex_unlock(&hold.m);
	pthread_join(holder, NULL);
	hold.armed = hold.inside = hold.release = false;
	assert_int_equal(fh_run_later(), 1); /* what the I/O thread does next */
	assert_int_equal(td.notifies, 1);
	assert_int_equal(drv_used_idx(1), 1);
	/* With the lock free, the kick is served on the vCPU thread again. */
	drv_publish(1, 4, 100);
	drv_kick(1);
	assert_int_equal(td.vcpu_notifies, 1);
	assert_int_equal(drv_used_idx(1), 2);
}

static void test_kick_before_driver_ok_is_ignored(void **state)
{
	(void)state;
	drv_enable_memory(true);
	assert_true(try_queue(TDEV_QMAX, RING_GPA(0), RING_GPA(0) + 0x1000, RING_GPA(0) + 0x2000));
	drv_publish(0, 0, 16);
	drv_kick(0);
	virtio_pci_kick(vd, 0);
	assert_int_equal(td.notifies, 0);
	assert_int_equal(fh.nio, 0);
}

static uint32_t drv_pba(void) { return drv_bar_read(VIRTIO_PCI_PBA_OFF, 4); }

static void test_msix_vector_mask(void **state)
{
	(void)state;
	drv_bring_up();
	const uint32_t ctrl = VIRTIO_PCI_MSIX_OFF + 16 * 1 + PCI_MSIX_ENTRY_VECTOR_CTRL;
	drv_bar_write(ctrl, PCI_MSIX_ENTRY_CTRL_MASKBIT, 4);
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(drv_used_idx(0), 1);
	assert_int_equal(fh.nmsi, 0);
	assert_int_equal(drv_pba(), 1u << 1);
	/* The PBA is read-only. */
	drv_bar_write(VIRTIO_PCI_PBA_OFF, 0, 4);
	assert_int_equal(drv_pba(), 1u << 1);
	/* Reprogramming the masked entry does not deliver. */
	drv_bar_write(VIRTIO_PCI_MSIX_OFF + 16 + PCI_MSIX_ENTRY_DATA, msi_data(9), 4);
	assert_int_equal(fh.nmsi, 0);
	/* Unmasking delivers once, with the entry as it is now. */
	drv_bar_write(ctrl, 0, 4);
	assert_int_equal(fh.nmsi, 1);
	assert_int_equal(fh.msi[0].addr, MSI_ADDR + 0x1000);
	assert_int_equal(fh.msi[0].data, msi_data(9));
	assert_int_equal(drv_pba(), 0);
	drv_bar_write(ctrl, 0, 4);
	assert_int_equal(fh.nmsi, 1);
	/* Other vectors were never held. */
	drv_publish(1, 0, 16);
	drv_kick(1);
	assert_int_equal(fh.nmsi, 2);
	assert_int_equal(fh.msi[1].data, msi_data(2));
}

/* A vector that went pending behind its mask is not delivered by the unmask
 * while the driver has taken bus mastering away (an MSI is a memory write),
 * only once it gives it back. Found by tests/fuzz/fuzz_virtio_pci.c. */
static void test_msix_pending_waits_for_bus_master(void **state)
{
	(void)state;
	drv_bring_up();
	const uint32_t ctrl = VIRTIO_PCI_MSIX_OFF + 16 * 1 + PCI_MSIX_ENTRY_VECTOR_CTRL;
	drv_bar_write(ctrl, PCI_MSIX_ENTRY_CTRL_MASKBIT, 4);
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(drv_pba(), 1u << 1);
	drv_cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	drv_bar_write(ctrl, 0, 4);
	assert_int_equal(fh.nmsi, 0);
	assert_int_equal(drv_pba(), 1u << 1);
	drv_cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	assert_int_equal(fh.nmsi, 1);
	assert_int_equal(fh.msi[0].addr, MSI_ADDR + 0x1000);
	assert_int_equal(drv_pba(), 0);
}

static void test_msix_function_mask(void **state)
{
	(void)state;
	drv_bring_up();
	drv_msix_flags(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	drv_publish(0, 0, 16);
	drv_kick(0);
	drv_publish(1, 0, 16);
	drv_kick(1);
	assert_int_equal(drv_used_idx(0), 1);
	assert_int_equal(drv_used_idx(1), 1);
	assert_int_equal(fh.nmsi, 0);
	assert_int_equal(drv_pba(), (1u << 1) | (1u << 2));
	/* Through the ports this time: function mask off, MSI-X still on. */
	drv_cf8_write(VSLOT, msix_cap + PCI_MSIX_FLAGS + 1, PCI_MSIX_FLAGS_ENABLE >> 8, 1);
	assert_int_equal(fh.nmsi, 2);
	assert_int_equal(drv_pba(), 0);
	bool saw1 = false, saw2 = false;
	for (unsigned i = 0; i < fh.nmsi; i++) {
		saw1 |= fh.msi[i].data == msi_data(1) && fh.msi[i].addr == MSI_ADDR + 0x1000;
		saw2 |= fh.msi[i].data == msi_data(2) && fh.msi[i].addr == MSI_ADDR + 0x2000;
	}
	assert_true(saw1 && saw2);
	drv_msix_flags(PCI_MSIX_FLAGS_ENABLE);
	assert_int_equal(fh.nmsi, 2);

	/* Function mask and vector mask together: both must go before delivery. */
	drv_msix_flags(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	drv_bar_write(VIRTIO_PCI_MSIX_OFF + 16 + PCI_MSIX_ENTRY_VECTOR_CTRL, PCI_MSIX_ENTRY_CTRL_MASKBIT, 4);
	drv_publish(0, 1, 16);
	drv_kick(0);
	assert_int_equal(drv_pba(), 1u << 1);
	drv_msix_flags(PCI_MSIX_FLAGS_ENABLE);
	assert_int_equal(fh.nmsi, 2);
	drv_bar_write(VIRTIO_PCI_MSIX_OFF + 16 + PCI_MSIX_ENTRY_VECTOR_CTRL, 0, 4);
	assert_int_equal(fh.nmsi, 3);
	assert_int_equal(fh.msi[2].data, msi_data(1));
	assert_int_equal(drv_pba(), 0);
}

static void test_isr_read_clears(void **state)
{
	(void)state;
	drv_bring_up();
	drv_msix_flags(0); /* MSI-X off: the ISR is all the driver gets */
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), 0);
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(fh.nmsi, 0);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), 1);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), 0);

	/* A broken queue while running: NEEDS_RESET and a configuration interrupt. */
	struct vring_desc *d = guest_mem_ptr(&mem, RING_GPA(1), 16);
	uint16_t *avail = guest_mem_ptr(&mem, RING_GPA(1) + 0x1000, 6);
	d[0] = (struct vring_desc){ RAM_SIZE, 16, VRING_DESC_F_WRITE, 0 }; /* outside RAM */
	avail[2] = 0;
	avail[1] = 1;
	drv_kick(1);
	assert_true(drv_status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_CONFIG);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), 0);
	/* With MSI-X on, the configuration vector is used. */
	drv_set_status(0);
	fh.nmsi = 0;
	drv_bring_up();
	d[0] = (struct vring_desc){ RAM_SIZE, 16, VRING_DESC_F_WRITE, 0 };
	avail[2] = 0;
	avail[1] = 1;
	drv_kick(1);
	assert_int_equal(fh.nmsi, 1);
	assert_int_equal(fh.msi[0].data, msi_data(0));
	/* A broken device ignores kicks until reset. */
	unsigned n = td.notifies;
	drv_kick(0);
	assert_int_equal(td.notifies, n);
}

/*
 * INTx for a driver that leaves MSI-X off (Linux with pci=nomsi): the pin
 * and line registers name INTA and the slot's GSI; the line is high while
 * the ISR holds a bit, a read of the ISR lowers it, Interrupt Disable and
 * MSI-X silence it, and a reset lowers it.
 */
static void test_intx(void **state)
{
	(void)state;
	unsigned gsi = LAYOUT_PCI_INTX_GSI(VSLOT);
	assert_int_equal(drv_cfg_read(PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(drv_cfg_read(PCI_INTERRUPT_LINE, 1), gsi);
	drv_bring_up();
	drv_msix_flags(0);
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(fh.nmsi, 0);
	assert_int_equal(fh.irq_gsi, gsi);
	assert_int_equal(fh.irq_level, 1);
	assert_true(drv_cfg_read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* A second completion before the read: still one edge, still high. */
	unsigned changes = fh.irq_changes;
	drv_publish(0, 1, 16);
	drv_kick(0);
	assert_int_equal(fh.irq_changes, changes);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), 1); /* the queue bit */
	assert_int_equal(fh.irq_level, 0);
	assert_false(drv_cfg_read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);

	/* Interrupt Disable holds the line low; clearing it raises the pending one. */
	uint32_t cmd = drv_cfg_read(PCI_COMMAND, 2);
	drv_cfg_write(PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE, 2);
	drv_publish(0, 2, 16);
	drv_kick(0);
	assert_int_equal(fh.irq_level, 0);
	drv_cfg_write(PCI_COMMAND, cmd, 2);
	assert_int_equal(fh.irq_level, 1);

	/* Turning MSI-X on lowers INTx; the next completion is an MSI. */
	drv_msix_flags(PCI_MSIX_FLAGS_ENABLE);
	assert_int_equal(fh.irq_level, 0);
	drv_msix_flags(0);
	assert_int_equal(fh.irq_level, 1); /* the ISR bit is still unread */
	drv_set_status(0); /* reset */
	assert_int_equal(fh.irq_level, 0);
}

/*
 * Slots s and s + 8 share a GSI: the line is high while either device
 * asserts, so one device's ISR read does not swallow the other's interrupt.
 */
static void test_intx_shared_line(void **state)
{
	(void)state;
	static const struct pci_device_info info = {
		.vendor_id = 0x1b36, .device_id = 0x0011, .class_code = 0xff0000, .name = "filler",
	};
	struct pci_device *other = NULL;
	for (unsigned slot = 2; slot <= VSLOT + LAYOUT_PCI_INTX_GSI_COUNT; slot++)
		other = pci_add_device(&pbus, &info, NULL);
	assert_non_null(other);
	assert_int_equal(pci_enable_intx(other), LAYOUT_PCI_INTX_GSI(VSLOT));
	drv_bring_up();
	drv_msix_flags(0);
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(fh.irq_level, 1);
	unsigned changes = fh.irq_changes;
	pci_set_intx(other, true);
	assert_int_equal(fh.irq_changes, changes); /* already high */
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), 1);
	assert_int_equal(fh.irq_level, 1);         /* the other device still asserts */
	assert_int_equal(fh.irq_changes, changes);
	pci_set_intx(other, true);                 /* repeating a state changes nothing */
	pci_set_intx(other, false);
	assert_int_equal(fh.irq_level, 0);
	assert_int_equal(fh.irq_changes, changes + 1);
}

static void test_reset(void **state)
{
	(void)state;
	drv_bring_up();
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(td.notifies, 1);
	unsigned attached = fh.nio;

	drv_set_status(0);
	assert_int_equal(td.resets, 1);
	assert_int_equal(drv_status(), 0);
	/* Each eventfd detached where it was attached. */
	assert_int_equal(fh.nio, 2 * attached);
	for (unsigned i = 0; i < attached; i++) {
		assert_false(fh.io[attached + i].on);
		assert_ptr_equal(fh.io[attached + i].vd, vd);
		assert_int_equal(fh.io[attached + i].queue, fh.io[i].queue);
		assert_int_equal(fh.io[attached + i].gpa, fh.io[i].gpa);
	}
	assert_int_equal(drv_read_features(false), 0);
	assert_int_equal(drv_common_read(CC(msix_config), 2), VIRTIO_MSI_NO_VECTOR);
	for (unsigned q = 0; q < TDEV_QUEUES; q++) {
		drv_common_write(CC(queue_select), q, 2);
		assert_int_equal(drv_common_read(CC(queue_enable), 2), 0);
		assert_int_equal(drv_common_read(CC(queue_size), 2), TDEV_QMAX);
		assert_int_equal(drv_common_read(CC(queue_desc_lo), 4), 0);
		assert_int_equal(drv_common_read(CC(queue_avail_lo), 4), 0);
		assert_int_equal(drv_common_read(CC(queue_used_lo), 4), 0);
		assert_int_equal(drv_common_read(CC(queue_msix_vector), 2), VIRTIO_MSI_NO_VECTOR);
	}
	/* No kick reaches the device until it runs again. */
	virtio_pci_kick(vd, 0);
	drv_bar_write(VIRTIO_PCI_NOTIFY_OFF, 0, 2);
	assert_int_equal(td.notifies, 1);
	/* A second reset in a row does not reset the device model again. */
	drv_set_status(0);
	assert_int_equal(td.resets, 1);
	assert_int_equal(fh.nio, 2 * attached);

	/* And it comes up again from scratch. */
	memset(guest_mem_ptr(&mem, 0, 1u << 20), 0, 1u << 20);
	drv_bring_up();
	assert_int_equal(td.activations, 2);
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(drv_used_idx(0), 1);
	assert_int_equal(td.notifies, 2);
}

static void test_reset_after_bar_move(void **state)
{
	(void)state;
	drv_bring_up();
	assert_int_equal(fh.nio, TDEV_QUEUES);
	uint64_t attached_gpa = fh.io[0].gpa;
	/* The OS re-assigns the BAR while the driver runs (e.g. a rescan). */
	drv_enable_memory(false);
	drv_move_bar(0xd0000000u);
	drv_enable_memory(true);
	drv_publish(0, 0, 16);
	drv_kick(0);
	assert_int_equal(td.notifies, 1);
	drv_set_status(0);
	/*
	 * Regression (fixed in 49547ba): detach_eventfds() used to name the BAR's
	 * current address (0xd0003000) instead of the one the eventfd was attached
	 * at (0xc0003000); KVM refuses such a deassign and the eventfd stayed.
	 */
	bool detached_old = false;
	for (unsigned i = TDEV_QUEUES; i < fh.nio; i++)
		if (!fh.io[i].on && fh.io[i].queue == 0 && fh.io[i].gpa == attached_gpa)
			detached_old = true;
	if (!detached_old)
		fail_msg("queue 0 eventfd attached at 0x%llx never detached there",
			 (unsigned long long)attached_gpa);
}

/* ---- odd accesses ---- */

static void test_unnatural_widths(void **state)
{
	(void)state;
	drv_enable_memory(true);
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
	/* Status is one byte: wider writes there are dropped. */
	drv_common_write(CC(device_status), 0, 2);
	drv_common_write(CC(device_status), 0, 4);
	drv_bar_write(CC(device_status), 0, 8);
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE);
	/* queue_select is two bytes: a byte write does not change it. */
	drv_common_write(CC(queue_select), 1, 1);
	drv_common_write(CC(queue_select), 1, 4);
	assert_int_equal(drv_common_read(CC(queue_select), 2), 0);
	/* Misaligned and narrow writes inside fields. */
	drv_common_write(CC(queue_size) + 1, 0, 1);
	drv_common_write(CC(queue_size), 0x10, 1);
	drv_common_write(CC(queue_desc_lo) + 2, 0xffff, 2);
	drv_common_write(CC(queue_desc_lo) + 1, 0xffffffff, 4);
	drv_common_write(CC(guest_feature) + 2, 0xffff, 2);
	drv_common_write(CC(device_feature_select), 1, 2);
	drv_bar_write(CC(queue_desc_lo), 0x1234567812345000ull, 8);
	assert_int_equal(drv_common_read(CC(queue_size), 2), TDEV_QMAX);
	assert_int_equal(drv_common_read(CC(queue_desc_lo), 4), 0);
	assert_int_equal(drv_common_read(CC(queue_desc_hi), 4), 0);
	assert_int_equal(drv_common_read(CC(guest_feature), 4), 0);
	assert_int_equal(drv_common_read(CC(device_feature_select), 4), 0);
	/* Read-only fields of the common configuration. */
	drv_common_write(CC(num_queues), 9, 2);
	drv_common_write(CC(device_feature), 0xffffffff, 4);
	drv_common_write(CC(config_generation), 9, 1);
	drv_common_write(CC(queue_notify_off), 9, 2);
	assert_int_equal(drv_common_read(CC(num_queues), 2), TDEV_QUEUES);
	assert_int_equal(drv_common_read(CC(device_feature), 4), (uint32_t)tdev_features(NULL));
	assert_int_equal(drv_common_read(CC(config_generation), 1), 0);
	assert_int_equal(drv_common_read(CC(queue_notify_off), 2), 0);
	/* Past the structure, up to the ISR page, and at the end of the BAR. */
	for (uint32_t off = sizeof(struct virtio_pci_common_cfg); off < VIRTIO_PCI_ISR_OFF; off += 0x1c4) {
		drv_common_write(off, 0xffffffff, 4);
		assert_int_equal(drv_common_read(off, 4), 0);
	}
	assert_int_equal(drv_common_read(VIRTIO_PCI_ISR_OFF - 2, 4), 0);
	drv_bar_write(VIRTIO_PCI_ISR_OFF, 0xff, 1);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_ISR_OFF, 1), 0);
	drv_bar_write(VIRTIO_PCI_BAR_SIZE - 1, 0xff, 1);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_BAR_SIZE - 1, 1), 0);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_BAR_SIZE - 2, 4), 0xffffffff); /* crosses the BAR end */
	/* MSI-X table at the wrong width or alignment. */
	drv_bar_write(VIRTIO_PCI_MSIX_OFF, 0xfee00000ull | 0xffull << 32, 8);
	drv_bar_write(VIRTIO_PCI_MSIX_OFF + 2, 0xffff, 2);
	drv_bar_write(VIRTIO_PCI_MSIX_OFF + 1, 0xffffffff, 4);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_MSIX_OFF, 4), 0);
	assert_int_equal(drv_bar_read(VIRTIO_PCI_MSIX_OFF + 4, 4), 0);
	assert_int_equal(drv_status(), VIRTIO_CONFIG_S_ACKNOWLEDGE);
	/* Config space: accesses that run past 256 bytes or the ECAM function. */
	drv_mmio_write(drv_ecam_gpa(VSLOT, 0, 0xffe), 0xffffffff, 4);
	assert_int_equal(drv_ecam_read(VSLOT, 0, 0xffc, 4), 0);
	drv_ecam_write(VSLOT, PCI_CFG_SIZE - 2, 0xffffffff, 4);
	assert_int_equal(drv_cfg_read(PCI_VENDOR_ID, 4), 0x10411af4);
}

static void test_cf9_through_config_ports(void **state)
{
	(void)state;
	drv_port_write(PORT_PCI_CONFIG + 1, 0x06, 1);
	assert_int_equal(cf9.writes, 1);
	assert_int_equal(cf9.last_offset, 0);
	assert_int_equal(cf9.last_len, 1);
	assert_int_equal(cf9.last_value, 0x06);
	assert_int_equal(drv_port_read(PORT_PCI_CONFIG + 1, 1), 0x42);
	assert_int_equal(cf9.reads, 1);
	assert_int_equal(cf9.last_offset, 0);

	/* Everything else in the range stays PCI's. */
	drv_port_write(PORT_PCI_CONFIG, drv_cf8_addr(0, VSLOT, 0, 0), 4);
	assert_int_equal(drv_port_read(PORT_PCI_CONFIG, 4), drv_cf8_addr(0, VSLOT, 0, 0));
	drv_port_write(PORT_PCI_CONFIG + 1, 0x0e0e, 2);
	drv_port_write(PORT_PCI_CONFIG, 0x0e, 1);
	drv_port_write(PORT_PCI_CONFIG + 2, 0x0e, 1);
	drv_port_read(PORT_PCI_CONFIG + 1, 2);
	assert_int_equal(drv_port_read(PORT_PCI_CONFIG + 4, 4), 0x10411af4);
	assert_int_equal(cf9.writes, 1);
	assert_int_equal(cf9.reads, 1);
	assert_int_equal(drv_port_read(PORT_PCI_CONFIG, 4), drv_cf8_addr(0, VSLOT, 0, 0));

	/* Without a reset register, a byte at 0xCF9 goes nowhere. */
	pbus.port_cf9_ops = NULL;
	uint8_t b = 0x06;
	pci_config_port_ops.write(&pbus, 1, &b, 1);
	pci_config_port_ops.read(&pbus, 1, &b, 1);
	assert_int_equal(b, 0xff);
	assert_int_equal(cf9.writes, 1);
	assert_int_equal(pbus.config_address, drv_cf8_addr(0, VSLOT, 0, 0));
}

/* The bus holds 32 functions, host bridge included; the 33rd is refused. */
static void test_bus_full(void **state)
{
	(void)state;
	static const struct pci_device_info info = {
		.vendor_id = 0x1b36, .device_id = 0x0011, .class_code = 0xff0000, .name = "filler",
	};
	for (unsigned slot = 2; slot < PCI_SLOTS; slot++) {
		struct pci_device *pd = pci_add_device(&pbus, &info, NULL);
		assert_non_null(pd);
		assert_int_equal(pd->slot, slot);
	}
	assert_null(pci_add_device(&pbus, &info, NULL));
	assert_int_equal(drv_cf8_read(PCI_SLOTS - 1, PCI_VENDOR_ID, 4), 0x00111b36);
	assert_int_equal(drv_ecam_read(PCI_SLOTS - 1, 0, PCI_VENDOR_ID, 4), 0x00111b36);
	assert_int_equal(drv_cf8_read(VSLOT, PCI_VENDOR_ID, 4), 0x10411af4);
}

/* virtio-rng over the same transport: a full request, random bytes delivered. */
static void test_rng_request(void **state)
{
	(void)state;
	struct virtio_rng *rng = virtio_rng_create();
	assert_non_null(rng);
	struct virtio_dev *rvd = virtio_pci_create(&pbus, &mem, &virtio_rng_ops, rng, &fake_host_ops);
	assert_non_null(rvd);
	uint32_t rbar = drv_ecam_read(2, 0, PCI_BASE_ADDRESS_0, 4) & PCI_BASE_ADDRESS_MEM_MASK;
	drv_ecam_write(2, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	uint64_t saved = bar;
	bar = rbar;
	assert_true(drv_negotiate(VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT)));
	assert_int_equal(drv_common_read(CC(queue_size), 2), 256);
	drv_queue_program(0, TDEV_QMAX, RING_GPA(0), RING_GPA(0) + 0x1000, RING_GPA(0) + 0x2000);
	assert_true(drv_queue_enable(0));
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	assert_true(drv_status() & VIRTIO_CONFIG_S_DRIVER_OK);
	assert_int_equal(fh.nio, 1);
	assert_int_equal(fh.io[0].gpa, rbar + VIRTIO_PCI_NOTIFY_OFF);
	drv_publish(0, 0, 64);
	drv_kick(0);
	assert_int_equal(drv_used_idx(0), 1);
	uint32_t *used = guest_mem_ptr(&mem, RING_GPA(0) + 0x2000 + 4, 8);
	assert_int_equal(used[0], 0);
	assert_int_equal(used[1], 64);
	const uint8_t *buf = guest_mem_ptr(&mem, BUF_GPA, 64);
	unsigned nonzero = 0;
	for (unsigned i = 0; i < 64; i++)
		nonzero += buf[i] != 0;
	assert_true(nonzero > 32);
	bar = saved;
	virtio_pci_destroy(rvd);
	virtio_rng_destroy(rng);
	/* Destroying it detached its eventfd. */
	assert_int_equal(fh.nio, 2);
	assert_false(fh.io[1].on);
}

/*
 * A guest that fills the rng's ring (and would refill it from another vCPU)
 * does not hold the I/O thread: one kick serves VIRTIO_RNG_BUDGET requests
 * and asks the host for a later kick; the later turns serve the rest, each
 * at most the budget, every buffer once, and then nothing more is asked.
 */
static void test_rng_budget_per_kick(void **state)
{
	(void)state;
	struct virtio_rng *rng = virtio_rng_create();
	assert_non_null(rng);
	struct virtio_dev *rvd = virtio_pci_create(&pbus, &mem, &virtio_rng_ops, rng, &fake_host_ops);
	assert_non_null(rvd);
	uint32_t rbar = drv_ecam_read(2, 0, PCI_BASE_ADDRESS_0, 4) & PCI_BASE_ADDRESS_MEM_MASK;
	drv_ecam_write(2, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	uint64_t saved = bar;
	bar = rbar;
	assert_true(drv_negotiate(VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT)));
	drv_queue_program(0, TDEV_QMAX, RING_GPA(0), RING_GPA(0) + 0x1000, RING_GPA(0) + 0x2000);
	assert_true(drv_queue_enable(0));
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	for (uint16_t head = 0; head < TDEV_QMAX; head++)
		drv_publish(0, head, 32);
	drv_kick(0);
	assert_int_equal(drv_used_idx(0), VIRTIO_RNG_BUDGET);
	assert_int_equal(fh.nlater, 1);
	unsigned turns = 0;
	uint16_t before = drv_used_idx(0);
	while (fh_run_later() && turns < 100) {
		turns++;
		assert_true((uint16_t)(drv_used_idx(0) - before) <= VIRTIO_RNG_BUDGET);
		before = drv_used_idx(0);
	}
	assert_int_equal(drv_used_idx(0), TDEV_QMAX);
	assert_int_equal(turns, TDEV_QMAX / VIRTIO_RNG_BUDGET - 1);
	/* Every buffer came back once, with what it asked for. */
	uint32_t *used = guest_mem_ptr(&mem, RING_GPA(0) + 0x2000 + 4, 8 * TDEV_QMAX);
	uint64_t seen = 0;
	for (unsigned i = 0; i < TDEV_QMAX; i++) {
		assert_true(used[2 * i] < TDEV_QMAX);
		seen |= 1ull << used[2 * i];
		assert_int_equal(used[2 * i + 1], 32);
	}
	assert_true(seen == ~0ull);
	bar = saved;
	virtio_pci_destroy(rvd);
	virtio_rng_destroy(rng);
}

/*
 * The same through the machine's glue (vmm/virtio-host.c) and a real I/O
 * thread: the later kick goes through the queue's eventfd, so other work
 * ready on the I/O thread (a probe eventfd here, standing for a disk
 * completion or the control socket) is served before the rng's rest.
 */
struct gate {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool inside, open;
};

static void gate_hold(void *ctx)
{
	struct gate *g = ctx;
	pthread_mutex_lock(&g->m);
	g->inside = true;
	pthread_cond_broadcast(&g->c);
	while (!g->open)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
}

struct io_probe {
	int fd;
	_Atomic int used_seen;  /* the rng's used index when the probe ran; -1 before */
};

static void probe_fired(void *ctx, uint32_t events)
{
	(void)events;
	struct io_probe *p = ctx;
	uint64_t v;
	if (read(p->fd, &v, sizeof(v)) == sizeof(v))
		atomic_store(&p->used_seen, drv_used_idx(0));
}

static void test_rng_budget_yields_io_thread(void **state)
{
	(void)state;
	struct kvm_vm vm = { .kvm_fd = -1, .vm_fd = -1, .mem = mem }; /* no KVM: MSIs and ioeventfds fail */
	struct iothread *io = iothread_create();
	assert_non_null(io);
	struct virtio_host *vh = virtio_host_create(&vm, &pbus, io);
	struct virtio_rng *rng = virtio_rng_create();
	assert_true(vh && rng && virtio_host_add(vh, &virtio_rng_ops, rng));
	struct io_probe probe = { eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), -1 };
	assert_true(probe.fd >= 0 && iothread_watch(io, probe.fd, EPOLLIN, probe_fired, &probe));
	assert_true(iothread_start(io));

	uint32_t rbar = drv_ecam_read(2, 0, PCI_BASE_ADDRESS_0, 4) & PCI_BASE_ADDRESS_MEM_MASK;
	drv_ecam_write(2, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	uint64_t saved = bar;
	bar = rbar;
	assert_true(drv_negotiate(VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT)));
	drv_queue_program(0, TDEV_QMAX, RING_GPA(0), RING_GPA(0) + 0x1000, RING_GPA(0) + 0x2000);
	assert_true(drv_queue_enable(0));
	drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	for (uint16_t head = 0; head < TDEV_QMAX; head++)
		drv_publish(0, head, 32);

	/* Hold the I/O thread, kick (served here, on the "vCPU"), ready the probe, let go. */
	struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false };
	assert_true(iothread_call(io, gate_hold, &g));
	pthread_mutex_lock(&g.m);
	while (!g.inside)
		pthread_cond_wait(&g.c, &g.m);
	pthread_mutex_unlock(&g.m);
	drv_kick(0);
	assert_int_equal(drv_used_idx(0), VIRTIO_RNG_BUDGET);
	uint64_t one = 1;
	assert_int_equal(write(probe.fd, &one, sizeof(one)), sizeof(one));
	pthread_mutex_lock(&g.m);
	g.open = true;
	pthread_cond_broadcast(&g.c);
	pthread_mutex_unlock(&g.m);

	for (int i = 0; i < 5000 && drv_used_idx(0) != TDEV_QMAX; i++)
		usleep(1000);
	assert_int_equal(drv_used_idx(0), TDEV_QMAX); /* the rest came, with no kick of the driver's */
	int seen = atomic_load(&probe.used_seen);
	if (seen < VIRTIO_RNG_BUDGET || seen > 2 * VIRTIO_RNG_BUDGET)
		fail_msg("the probe ran when the rng had served %d of %u buffers; want %u to %u",
			 seen, TDEV_QMAX, VIRTIO_RNG_BUDGET, 2 * VIRTIO_RNG_BUDGET);
	bar = saved;
	iothread_destroy(io);
	virtio_host_destroy(vh);
	virtio_rng_destroy(rng);
	close(probe.fd);
}

/* ---- what a guest can make the host log ---- */

static int saved_stderr = -1, capture_fd = -1;

static void capture_stderr(void)
{
	fflush(stderr);
	capture_fd = memfd_create("stderr", MFD_CLOEXEC);
	assert_true(capture_fd >= 0);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(dup2(capture_fd, STDERR_FILENO) == STDERR_FILENO);
}

/* Stops capturing; returns the lines written meanwhile. */
static unsigned captured_lines(void)
{
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	char buf[4096];
	unsigned lines = 0;
	ssize_t n;
	for (off_t at = 0; (n = pread(capture_fd, buf, sizeof(buf), at)) > 0; at += n)
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	close(capture_fd);
	return lines;
}

/*
 * A guest that breaks the device and resets it, thousands of times in a
 * second: the device answers NEEDS_RESET every time, but the host's log
 * gets a handful of lines (a rate limit per device), not one per cycle.
 * Before the limit, each cycle wrote a line: 10 MB in under a second.
 */
#define RESET_CYCLES 5000

static void test_reset_cycles_log_bounded(void **state)
{
	(void)state;
	drv_enable_memory(true);
	capture_stderr();
	unsigned needs_reset = 0;
	for (unsigned i = 0; i < RESET_CYCLES; i++) {
		drv_set_status(0);
		drv_set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_DRIVER_OK);
		needs_reset += (drv_status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0;
	}
	unsigned lines = captured_lines();
	assert_int_equal(needs_reset, RESET_CYCLES);
	if (lines < 1 || lines > 6)
		fail_msg("%u resets of a broken driver logged %u lines; want 1 to 6", RESET_CYCLES, lines);
}

/*
 * Each start of the device attaches an ioeventfd per queue; when KVM
 * refuses them (here: a VM without an fd), a guest that restarts its
 * driver in a loop must not get a line logged per start.
 */
static void test_ioeventfd_failures_log_bounded(void **state)
{
	(void)state;
	struct kvm_vm broken = { .kvm_fd = -1, .vm_fd = -1 };
	fh.kvm = &broken;
	capture_stderr();
	for (unsigned i = 0; i < RESET_CYCLES / 10; i++) {
		drv_bring_up();
		drv_set_status(0);
	}
	unsigned lines = captured_lines();
	fh.kvm = NULL;
	assert_int_equal(td.activations, RESET_CYCLES / 10);
	if (lines < 1 || lines > 6)
		fail_msg("%u device starts with failing ioeventfds logged %u lines; want 1 to 6",
			 RESET_CYCLES / 10, lines);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_ids_through_cf8_and_ecam),
		T(test_bar_sizing_move_and_decode),
		T(test_capability_list),
		T(test_read_only_config),
		T(test_device_feature_pages),
		T(test_features_refused),
		T(test_features_frozen_after_features_ok),
		T(test_driver_ok_without_features_ok),
		T(test_queue_size_checks),
		T(test_queue_ring_checks),
		T(test_queue_fields_frozen_after_enable),
		T(test_queue_select_out_of_range),
		T(test_msix_vector_bounds),
		T(test_bring_up_kick_and_msi),
		cmocka_unit_test_setup_teardown(test_vcpu_notify_queue, setup_vcpu_notify, teardown),
		cmocka_unit_test_setup_teardown(test_vcpu_queue_notify_and_poll, setup_vcpu_notify, teardown),
		cmocka_unit_test_setup_teardown(test_vcpu_kick_while_locked, setup_vcpu_notify, teardown),
		T(test_kick_before_driver_ok_is_ignored),
		T(test_msix_vector_mask),
		T(test_msix_pending_waits_for_bus_master),
		T(test_msix_function_mask),
		T(test_isr_read_clears),
		T(test_intx),
		T(test_intx_shared_line),
		T(test_reset),
		T(test_reset_after_bar_move),
		T(test_unnatural_widths),
		T(test_cf9_through_config_ports),
		T(test_bus_full),
		T(test_rng_request),
		T(test_rng_budget_per_kick),
		T(test_rng_budget_yields_io_thread),
		T(test_reset_cycles_log_bounded),
		T(test_ioeventfd_failures_log_bounded),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

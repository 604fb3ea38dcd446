/*
 * virtio-pci modern transport (see virtio-pci.h). Everything the driver
 * writes is checked where it lands: feature bits against what was offered,
 * queue sizes against the maximum, ring addresses by vq_enable(), MSI-X
 * vectors against the table size (an out-of-range vector reads back as
 * NO_VECTOR, as the spec asks). A driver that breaks a queue breaks only
 * this device (DEVICE_NEEDS_RESET), never the VMM.
 */
#include "dev/virtio-pci.h"

#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/ratelimit.h"
#include "base/util.h"

#define VIRTIO_PCI_VENDOR       0x1af4
#define VIRTIO_PCI_DEVICE_BASE  0x1040
#define MSIX_ENTRY_SIZE         16
#define MSIX_VECTORS            (VIRTIO_MAX_QUEUES + 1)
#define MSIX_CTRL_MASKBIT       1u
#define VIRTIO_PCI_ISR_QUEUE    0x1  /* ISR bit 0: a queue interrupt */

struct virtio_queue_state {
	struct vq vq;
	uint16_t size;
	uint16_t msix_vector;
	bool enabled;
	bool eventfd_attached;
	uint64_t eventfd_gpa;  /* where it was attached: the BAR may move later */
};

struct msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct virtio_dev {
	pthread_mutex_t lock;
	const struct virtio_device_ops *ops;
	void *dev;
	const struct guest_mem *mem;
	struct pci_device *pci;
	struct virtio_pci_host host;

	uint64_t device_features;
	uint64_t driver_features;
	uint32_t device_feature_select;
	uint32_t driver_feature_select;
	uint8_t status;
	uint8_t config_generation;
	uint16_t msix_config;
	uint16_t queue_select;
	uint8_t isr;
	bool reset_logged;     /* one line per broken episode ... */
	struct ratelimit log_limit; /* ... and few across resets: a guest may cycle them */
	uint32_t vcpu_queues;  /* VIRTIO_SERVE_VCPU queues (queue_info(); fixed) */
	struct virtio_queue_state q[VIRTIO_MAX_QUEUES];

	uint8_t msix_cap;
	bool msix_enabled;
	bool msix_function_masked;
	struct msix_entry msix[MSIX_VECTORS];
	uint32_t msix_pending; /* one bit per vector */
};

static unsigned num_vectors(const struct virtio_dev *vd)
{
	return vd->ops->num_queues + 1;
}

/* ---- interrupts ---- */

static void msix_fire(struct virtio_dev *vd, uint16_t vector)
{
	const struct msix_entry *e = &vd->msix[vector];
	vd->host.send_msi(vd->host.ctx, (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data);
}

/*
 * INTx (virtio 1.2, 4.1.4.5): without MSI-X the line is high while an ISR
 * bit is set, and a read of the ISR clears both. Level-triggered, so an
 * interrupt the guest has not yet read stays pending across its EOI.
 */
static void intx_update(struct virtio_dev *vd)
{
	bool level = vd->isr && !vd->msix_enabled && !pci_intx_disabled(vd->pci);
	pci_set_intx(vd->pci, level);
}

static void virtio_interrupt(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	vd->isr |= isr_bit;
	if (!vd->msix_enabled) {
		intx_update(vd);
		return;
	}
	if (vector == VIRTIO_MSI_NO_VECTOR || vector >= num_vectors(vd))
		return; /* the driver asked for no interrupt on this one */
	if (!pci_bus_master_enabled(vd->pci))
		return; /* an MSI is a memory write: not without bus mastering */
	if (vd->msix_function_masked || (vd->msix[vector].ctrl & MSIX_CTRL_MASKBIT))
		vd->msix_pending |= 1u << vector;
	else if (vd->host.send_msi)
		msix_fire(vd, vector);
}

/* Delivers interrupts that were held back by a mask that is now gone, once
 * the function may master the bus again (an MSI is a memory write). */
static void msix_deliver_pending(struct virtio_dev *vd)
{
	if (!vd->msix_enabled || vd->msix_function_masked || !pci_bus_master_enabled(vd->pci))
		return;
	for (unsigned v = 0; v < num_vectors(vd); v++) {
		uint32_t bit = 1u << v;
		if ((vd->msix_pending & bit) && !(vd->msix[v].ctrl & MSIX_CTRL_MASKBIT)) {
			vd->msix_pending &= ~bit;
			if (vd->host.send_msi)
				msix_fire(vd, (uint16_t)v);
		}
	}
}

/* ---- the device-facing API (dev/virtio.h) ---- */

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q < vd->ops->num_queues ? &vd->q[q].vq : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	if (q < vd->ops->num_queues && vq_should_interrupt(&vd->q[q].vq))
		virtio_interrupt(vd, vd->q[q].msix_vector, VIRTIO_PCI_ISR_QUEUE);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	vd->config_generation++;
	virtio_interrupt(vd, vd->msix_config, VIRTIO_PCI_ISR_CONFIG);
}

void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	if (!vd->reset_logged) {
		vd->reset_logged = true;
		log_limited(&vd->log_limit, LOG_LEVEL_WARN,
			    "%s: the guest driver broke the device (%s); it needs a reset",
			    vd->ops->name, why);
	}
	if (vd->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	vd->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	if (vd->status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_config_changed(vd);
}

void virtio_queue_notify_later(struct virtio_dev *vd, unsigned q)
{
	if (q < vd->ops->num_queues && vd->host.kick_later)
		vd->host.kick_later(vd->host.ctx, vd, q);
}

/* ---- lifecycle ---- */

static uint64_t notify_gpa(const struct virtio_dev *vd, unsigned q)
{
	return vd->pci->bar[0].addr + VIRTIO_PCI_NOTIFY_OFF + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULT;
}

static void detach_eventfds(struct virtio_dev *vd)
{
	for (unsigned q = 0; q < vd->ops->num_queues; q++) {
		if (vd->q[q].eventfd_attached && vd->host.set_ioeventfd)
			vd->host.set_ioeventfd(vd->host.ctx, vd, q, vd->q[q].eventfd_gpa, false);
		vd->q[q].eventfd_attached = false;
	}
}

static void virtio_reset(struct virtio_dev *vd)
{
	detach_eventfds(vd);
	if (vd->status & VIRTIO_CONFIG_S_DRIVER_OK)
		vd->ops->reset(vd->dev);
	vd->status = 0;
	vd->driver_features = 0;
	vd->device_feature_select = vd->driver_feature_select = 0;
	vd->queue_select = 0;
	vd->msix_config = VIRTIO_MSI_NO_VECTOR;
	vd->isr = 0;
	intx_update(vd);
	vd->reset_logged = false;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		vq_reset(&vd->q[q].vq, vd->mem);
		vd->q[q].size = vd->ops->queue_max_size;
		vd->q[q].msix_vector = VIRTIO_MSI_NO_VECTOR;
		vd->q[q].enabled = false;
		vd->q[q].eventfd_attached = false;
	}
}

static bool features_acceptable(struct virtio_dev *vd)
{
	if (vd->driver_features & ~vd->device_features)
		return false; /* the driver took something it was not offered */
	if (!(vd->driver_features & VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT)))
		return false; /* modern transport, modern drivers only */
	return !vd->ops->features_ok || vd->ops->features_ok(vd->dev, vd->driver_features);
}

static void virtio_activate(struct virtio_dev *vd)
{
	for (unsigned q = 0; q < vd->ops->num_queues; q++) {
		struct vq *vq = &vd->q[q].vq;
		vq->indirect = vd->driver_features & VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT);
		vq->event_idx = vd->driver_features & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT);
		uint64_t gpa = notify_gpa(vd, q);
		bool on_vcpu = vd->vcpu_queues & (1u << q);
		if (vd->q[q].enabled && !on_vcpu && vd->host.set_ioeventfd &&
		    vd->host.set_ioeventfd(vd->host.ctx, vd, q, gpa, true)) {
			vd->q[q].eventfd_attached = true;
			vd->q[q].eventfd_gpa = gpa;
		}
	}
	vd->ops->activate(vd->dev, vd, vd->driver_features);
}

static void write_status(struct virtio_dev *vd, uint8_t v)
{
	if (v == 0) {
		virtio_reset(vd);
		return;
	}
	uint8_t old = vd->status;
	/* The driver may only add bits; NEEDS_RESET is the device's to set. */
	uint8_t next = (uint8_t)(old | (v & ~VIRTIO_CONFIG_S_NEEDS_RESET));
	if ((next & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !features_acceptable(vd))
		next &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
	if ((next & VIRTIO_CONFIG_S_DRIVER_OK) && !(next & VIRTIO_CONFIG_S_FEATURES_OK)) {
		virtio_needs_reset(vd, "DRIVER_OK without FEATURES_OK");
		next &= (uint8_t)~VIRTIO_CONFIG_S_DRIVER_OK;
	}
	/* Keep NEEDS_RESET whether it was set before or by the checks above. */
	vd->status = (uint8_t)(next | (vd->status & VIRTIO_CONFIG_S_NEEDS_RESET));
	if ((vd->status & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    !(vd->status & VIRTIO_CONFIG_S_NEEDS_RESET))
		virtio_activate(vd);
}

/* ---- common configuration ---- */

static struct virtio_queue_state *selected_queue(struct virtio_dev *vd)
{
	return vd->queue_select < vd->ops->num_queues ? &vd->q[vd->queue_select] : NULL;
}

static void common_snapshot(struct virtio_dev *vd, struct virtio_pci_common_cfg *c)
{
	memset(c, 0, sizeof(*c));
	uint32_t sel = vd->device_feature_select;
	c->device_feature_select = sel;
	c->device_feature = sel < 2 ? (uint32_t)(vd->device_features >> (32 * sel)) : 0;
	c->guest_feature_select = vd->driver_feature_select;
	sel = vd->driver_feature_select;
	c->guest_feature = sel < 2 ? (uint32_t)(vd->driver_features >> (32 * sel)) : 0;
	c->msix_config = vd->msix_config;
	c->num_queues = (uint16_t)vd->ops->num_queues;
	c->device_status = vd->status;
	c->config_generation = vd->config_generation;
	c->queue_select = vd->queue_select;
	struct virtio_queue_state *qs = selected_queue(vd);
	if (!qs) {
		c->queue_msix_vector = VIRTIO_MSI_NO_VECTOR;
		return; /* queue_size 0: no such queue */
	}
	c->queue_size = qs->size;
	c->queue_msix_vector = qs->msix_vector;
	c->queue_enable = qs->enabled;
	c->queue_notify_off = vd->queue_select;
	c->queue_desc_lo = (uint32_t)qs->vq.desc_gpa;
	c->queue_desc_hi = (uint32_t)(qs->vq.desc_gpa >> 32);
	c->queue_avail_lo = (uint32_t)qs->vq.avail_gpa;
	c->queue_avail_hi = (uint32_t)(qs->vq.avail_gpa >> 32);
	c->queue_used_lo = (uint32_t)qs->vq.used_gpa;
	c->queue_used_hi = (uint32_t)(qs->vq.used_gpa >> 32);
}

static uint16_t checked_vector(const struct virtio_dev *vd, uint32_t v)
{
	return v < num_vectors(vd) ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void set_half(uint64_t *field, bool high, uint32_t v)
{
	if (high)
		*field = (*field & 0xffffffffull) | (uint64_t)v << 32;
	else
		*field = (*field & ~0xffffffffull) | v;
}

static void enable_queue(struct virtio_dev *vd, struct virtio_queue_state *qs)
{
	if (qs->enabled)
		return;
	if (qs->size == 0 || qs->size > vd->ops->queue_max_size) {
		virtio_needs_reset(vd, "queue size above the device's maximum");
		return;
	}
	qs->vq.size = qs->size;
	if (!vq_enable(&qs->vq)) {
		virtio_needs_reset(vd, qs->vq.why_broken);
		return;
	}
	qs->enabled = true;
}

/* Queue fields are writable only while the queue is off (spec 4.1.4.3.2). */
static void write_queue_field(struct virtio_dev *vd, size_t field, uint32_t v)
{
	struct virtio_queue_state *qs = selected_queue(vd);
	if (!qs)
		return;
	if (field == offsetof(struct virtio_pci_common_cfg, queue_msix_vector)) {
		qs->msix_vector = checked_vector(vd, v);
		return;
	}
	if (qs->enabled)
		return;
	switch (field) {
	case offsetof(struct virtio_pci_common_cfg, queue_size): qs->size = (uint16_t)v; break;
	case offsetof(struct virtio_pci_common_cfg, queue_enable): if (v == 1) enable_queue(vd, qs); break;
	case offsetof(struct virtio_pci_common_cfg, queue_desc_lo): set_half(&qs->vq.desc_gpa, false, v); break;
	case offsetof(struct virtio_pci_common_cfg, queue_desc_hi): set_half(&qs->vq.desc_gpa, true, v); break;
	case offsetof(struct virtio_pci_common_cfg, queue_avail_lo): set_half(&qs->vq.avail_gpa, false, v); break;
	case offsetof(struct virtio_pci_common_cfg, queue_avail_hi): set_half(&qs->vq.avail_gpa, true, v); break;
	case offsetof(struct virtio_pci_common_cfg, queue_used_lo): set_half(&qs->vq.used_gpa, false, v); break;
	case offsetof(struct virtio_pci_common_cfg, queue_used_hi): set_half(&qs->vq.used_gpa, true, v); break;
	default: break;
	}
}

static void write_driver_features(struct virtio_dev *vd, uint32_t v)
{
	uint32_t sel = vd->driver_feature_select;
	if (sel >= 2 || (vd->status & VIRTIO_CONFIG_S_FEATURES_OK))
		return; /* features are fixed once FEATURES_OK is set */
	uint64_t mask = 0xffffffffull << (32 * sel);
	vd->driver_features = (vd->driver_features & ~mask) | ((uint64_t)v << (32 * sel));
}

#define FIELD(name, width) { offsetof(struct virtio_pci_common_cfg, name), width }

static void common_write(struct virtio_dev *vd, uint64_t off, uint32_t v, unsigned len)
{
	static const struct {
		size_t off;
		unsigned width;
	} fields[] = {
		FIELD(device_feature_select, 4), FIELD(guest_feature_select, 4), FIELD(guest_feature, 4),
		FIELD(msix_config, 2), FIELD(device_status, 1), FIELD(queue_select, 2),
		FIELD(queue_size, 2), FIELD(queue_msix_vector, 2), FIELD(queue_enable, 2),
		FIELD(queue_desc_lo, 4), FIELD(queue_desc_hi, 4), FIELD(queue_avail_lo, 4),
		FIELD(queue_avail_hi, 4), FIELD(queue_used_lo, 4), FIELD(queue_used_hi, 4),
	};
	size_t i = 0;
	while (i < sizeof(fields) / sizeof(fields[0]) && (fields[i].off != off || fields[i].width != len))
		i++;
	if (i == sizeof(fields) / sizeof(fields[0]))
		return; /* read-only field, or not at its natural width */
	switch (off) {
	case offsetof(struct virtio_pci_common_cfg, device_feature_select): vd->device_feature_select = v; break;
	case offsetof(struct virtio_pci_common_cfg, guest_feature_select): vd->driver_feature_select = v; break;
	case offsetof(struct virtio_pci_common_cfg, guest_feature): write_driver_features(vd, v); break;
	case offsetof(struct virtio_pci_common_cfg, msix_config): vd->msix_config = checked_vector(vd, v); break;
	case offsetof(struct virtio_pci_common_cfg, device_status): write_status(vd, (uint8_t)v); break;
	case offsetof(struct virtio_pci_common_cfg, queue_select): vd->queue_select = (uint16_t)v; break;
	default: write_queue_field(vd, off, v); break;
	}
}

/* ---- MSI-X table and PBA ---- */

static uint32_t msix_read(struct virtio_dev *vd, uint64_t off)
{
	if (off >= VIRTIO_PCI_PBA_OFF)
		return off == VIRTIO_PCI_PBA_OFF ? vd->msix_pending : 0;
	uint64_t i = (off - VIRTIO_PCI_MSIX_OFF) / MSIX_ENTRY_SIZE;
	if (i >= num_vectors(vd))
		return 0;
	const uint32_t *words = &vd->msix[i].addr_lo;
	return words[(off % MSIX_ENTRY_SIZE) / 4];
}

static void msix_write(struct virtio_dev *vd, uint64_t off, uint32_t v)
{
	if (off >= VIRTIO_PCI_PBA_OFF)
		return; /* the PBA is read-only */
	uint64_t i = (off - VIRTIO_PCI_MSIX_OFF) / MSIX_ENTRY_SIZE;
	if (i >= num_vectors(vd))
		return;
	uint32_t *words = &vd->msix[i].addr_lo;
	words[(off % MSIX_ENTRY_SIZE) / 4] = v;
	msix_deliver_pending(vd);
}

/*
 * Guest wrote config space: track the MSI-X enable and function-mask bits,
 * and the INTx line, which MSI-X and the command register's Interrupt
 * Disable both silence.
 */
static void virtio_pci_config_written(void *opaque, uint32_t offset, uint32_t len)
{
	struct virtio_dev *vd = opaque;
	uint32_t ctrl = vd->msix_cap + PCI_MSIX_FLAGS;
	pthread_mutex_lock(&vd->lock);
	if (offset <= ctrl + 1 && offset + len > ctrl) {
		uint16_t flags = (uint16_t)(vd->pci->cfg[ctrl] | vd->pci->cfg[ctrl + 1] << 8);
		vd->msix_enabled = flags & PCI_MSIX_FLAGS_ENABLE;
		vd->msix_function_masked = flags & PCI_MSIX_FLAGS_MASKALL;
	}
	msix_deliver_pending(vd); /* also when bus mastering comes back */
	intx_update(vd);
	pthread_mutex_unlock(&vd->lock);
}

/* ---- BAR 0 ---- */

/* The queue a write at `off`, inside the notification area, kicks. */
static uint64_t notify_queue(uint64_t off)
{
	return (off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT;
}

/* A kick counts only for an enabled queue of a running, unbroken device. */
static bool queue_running(const struct virtio_dev *vd, uint64_t q)
{
	return q < vd->ops->num_queues && (vd->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
	       !(vd->status & VIRTIO_CONFIG_S_NEEDS_RESET) && vd->q[q].enabled;
}

/*
 * A kick through the notify register (on_vcpu: an MMIO write, on the
 * vCPU's thread) or through the queue's eventfd (on the I/O thread). An
 * MMIO kick of an I/O-thread queue (one whose ioeventfd KVM could not
 * attach) is served where it lands, as the I/O thread would serve it.
 */
static void kick_locked(struct virtio_dev *vd, uint64_t q, bool on_vcpu)
{
	if (!queue_running(vd, q))
		return;
	bool vcpu_path = on_vcpu && (vd->vcpu_queues & (1u << q));
	vd->ops->queue_notify(vd->dev, vd, (unsigned)q, vcpu_path ? VIRTIO_ON_VCPU : VIRTIO_ON_IO_THREAD);
}

static void bar_read_locked(struct virtio_dev *vd, uint64_t off, uint8_t *data, unsigned len)
{
	memset(data, 0, len);
	if (off < VIRTIO_PCI_ISR_OFF) {
		struct virtio_pci_common_cfg c;
		common_snapshot(vd, &c);
		if (off + len <= sizeof(c))
			memcpy(data, (uint8_t *)&c + off, len);
	} else if (off == VIRTIO_PCI_ISR_OFF && len == 1) {
		data[0] = vd->isr; /* reading acknowledges */
		vd->isr = 0;
		intx_update(vd);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF && off < VIRTIO_PCI_NOTIFY_OFF) {
		uint64_t rel = off - VIRTIO_PCI_DEVICE_OFF;
		if (rel + len <= vd->ops->config_size && vd->ops->config_read)
			vd->ops->config_read(vd->dev, (uint32_t)rel, data, len);
	} else if (off >= VIRTIO_PCI_MSIX_OFF && off % 4 == 0 && len == 4) {
		le_store(data, msix_read(vd, off), 4);
	}
}

static void bar_write_locked(struct virtio_dev *vd, uint64_t off, const uint8_t *data, unsigned len)
{
	if (off < VIRTIO_PCI_ISR_OFF) {
		common_write(vd, off, (uint32_t)le_load(data, len), len);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF && off < VIRTIO_PCI_NOTIFY_OFF) {
		uint64_t rel = off - VIRTIO_PCI_DEVICE_OFF;
		if (rel + len <= vd->ops->config_size && vd->ops->config_write)
			vd->ops->config_write(vd->dev, (uint32_t)rel, data, len);
	} else if (off >= VIRTIO_PCI_NOTIFY_OFF && off < VIRTIO_PCI_MSIX_OFF) {
		kick_locked(vd, notify_queue(off), true);
	} else if (off >= VIRTIO_PCI_MSIX_OFF && off % 4 == 0 && len == 4) {
		msix_write(vd, off, (uint32_t)le_load(data, len));
	}
}

static void bar_read(void *opaque, uint64_t off, uint8_t *data, unsigned len)
{
	struct virtio_dev *vd = opaque;
	pthread_mutex_lock(&vd->lock);
	bar_read_locked(vd, off, data, len);
	pthread_mutex_unlock(&vd->lock);
}

/* Whether a write at `off` is a kick of a VIRTIO_SERVE_VCPU queue. */
static bool is_vcpu_kick(const struct virtio_dev *vd, uint64_t off, unsigned *queue)
{
	if (off < VIRTIO_PCI_NOTIFY_OFF || off >= VIRTIO_PCI_MSIX_OFF)
		return false;
	uint64_t q = notify_queue(off);
	if (q >= vd->ops->num_queues || !(vd->vcpu_queues & (1u << q)))
		return false;
	*queue = (unsigned)q;
	return true;
}

/*
 * Takes the lock for a write to BAR 0; false instead when the write is a
 * vCPU's kick of a VIRTIO_SERVE_VCPU queue and another thread holds the
 * lock (the I/O thread in the middle of a batch, most likely): rather than
 * wait, the vCPU hands the kick to the I/O thread, which serves the queue
 * after its batch, so the kick is not lost.
 */
static bool lock_for_write(struct virtio_dev *vd, uint64_t off)
{
	unsigned q;
	if (!is_vcpu_kick(vd, off, &q)) {
		pthread_mutex_lock(&vd->lock);
		return true;
	}
	if (pthread_mutex_trylock(&vd->lock) == 0)
		return true;
	virtio_queue_notify_later(vd, q);
	return false;
}

static void bar_write(void *opaque, uint64_t off, const uint8_t *data, unsigned len)
{
	struct virtio_dev *vd = opaque;
	if (!lock_for_write(vd, off))
		return;
	bar_write_locked(vd, off, data, len);
	pthread_mutex_unlock(&vd->lock);
}

const struct io_ops virtio_pci_bar_ops = {
	.read = bar_read,
	.write = bar_write,
};

void virtio_pci_kick(struct virtio_dev *vd, unsigned queue)
{
	pthread_mutex_lock(&vd->lock);
	kick_locked(vd, queue, false);
	pthread_mutex_unlock(&vd->lock);
}

/* The VIRTIO_SERVE_VCPU queues whose vCPU work has finished; no lock. */
static uint32_t vcpu_work_done(struct virtio_dev *vd)
{
	uint32_t done = 0;
	for (uint32_t left = vd->vcpu_queues; left; left &= left - 1) {
		unsigned q = (unsigned)__builtin_ctz(left);
		if (vd->ops->vcpu_work_done(vd->dev, q))
			done |= 1u << q;
	}
	return done;
}

void virtio_pci_poll(struct virtio_dev *vd)
{
	/* Without the lock: this runs before every KVM_RUN of every vCPU. */
	uint32_t done = vd->ops->vcpu_work_done ? vcpu_work_done(vd) : 0;
	if (!done)
		return;
	pthread_mutex_lock(&vd->lock);
	for (unsigned q = 0; q < vd->ops->num_queues; q++)
		if ((done & (1u << q)) && queue_running(vd, q))
			vd->ops->queue_notify(vd->dev, vd, q, VIRTIO_ON_VCPU);
	pthread_mutex_unlock(&vd->lock);
}

/* ---- capabilities and creation ---- */

static bool add_virtio_cap(struct pci_device *pd, uint8_t type, uint32_t offset, uint32_t length,
			   bool notify)
{
	struct {
		struct virtio_pci_cap cap;
		uint32_t notify_off_multiplier;
	} c;
	memset(&c, 0, sizeof(c));
	c.cap.cap_vndr = PCI_CAP_ID_VNDR;
	c.cap.cap_len = notify ? sizeof(c) : sizeof(c.cap);
	c.cap.cfg_type = type;
	c.cap.bar = 0;
	c.cap.offset = offset;
	c.cap.length = length;
	c.notify_off_multiplier = VIRTIO_PCI_NOTIFY_MULT;
	return pci_add_capability(pd, &c, c.cap.cap_len) != 0;
}

static bool add_msix_cap(struct virtio_dev *vd)
{
	uint8_t cap[12] = { PCI_CAP_ID_MSIX, 0 };
	uint16_t table_size = (uint16_t)(num_vectors(vd) - 1);
	cap[2] = (uint8_t)table_size;
	cap[3] = (uint8_t)(table_size >> 8);
	le_store(&cap[4], VIRTIO_PCI_MSIX_OFF | 0, 4); /* table in BAR 0 */
	le_store(&cap[8], VIRTIO_PCI_PBA_OFF | 0, 4);  /* PBA in BAR 0 */
	vd->msix_cap = pci_add_capability(vd->pci, cap, sizeof(cap));
	if (!vd->msix_cap)
		return false;
	/* The guest may set only MSI-X enable and function mask. */
	uint8_t wmask[2] = { 0, (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8 };
	pci_cfg_set_wmask(vd->pci, vd->msix_cap + PCI_MSIX_FLAGS, wmask, 2);
	return true;
}

static uint32_t class_for(uint16_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET: return 0x020000;   /* network controller */
	case VIRTIO_ID_BLOCK: return 0x018000; /* mass storage, other */
	default: return 0xff0000;              /* unassigned class */
	}
}

struct virtio_dev *virtio_pci_create(struct pci_bus *bus, const struct guest_mem *mem,
				     const struct virtio_device_ops *ops, void *dev,
				     const struct virtio_pci_host *host)
{
	if (ops->num_queues == 0 || ops->num_queues > VIRTIO_MAX_QUEUES ||
	    ops->config_size > VIRTIO_PCI_NOTIFY_OFF - VIRTIO_PCI_DEVICE_OFF) {
		log_error("%s: unsupported queue count or config size", ops->name);
		return NULL;
	}
	struct virtio_dev *vd = calloc(1, sizeof(*vd));
	if (!vd)
		return NULL;
	pthread_mutex_init(&vd->lock, NULL);
	ratelimit_init(&vd->log_limit, 60, 5);
	vd->ops = ops;
	vd->dev = dev;
	vd->mem = mem;
	vd->host = *host;
	vd->device_features = ops->features(dev) | VIRTIO_FEATURE(VIRTIO_F_VERSION_1_BIT);
	for (unsigned q = 0; q < ops->num_queues; q++)
		if (virtio_queue_info_of(ops, dev, q).serve == VIRTIO_SERVE_VCPU)
			vd->vcpu_queues |= 1u << q;
	for (unsigned v = 0; v < MSIX_VECTORS; v++)
		vd->msix[v].ctrl = MSIX_CTRL_MASKBIT; /* vectors start masked */

	struct pci_device_info info = {
		.vendor_id = VIRTIO_PCI_VENDOR,
		.device_id = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id),
		.subsystem_vendor_id = VIRTIO_PCI_VENDOR,
		.subsystem_id = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id),
		.class_code = class_for(ops->device_id),
		.revision = 1, /* modern-only device */
		.name = ops->name,
	};
	vd->pci = pci_add_device(bus, &info, vd);
	if (!vd->pci || !pci_add_bar(vd->pci, 0, VIRTIO_PCI_BAR_SIZE, &virtio_pci_bar_ops, vd) ||
	    !add_virtio_cap(vd->pci, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF,
			    sizeof(struct virtio_pci_common_cfg), false) ||
	    !add_virtio_cap(vd->pci, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 1, false) ||
	    (ops->config_size &&
	     !add_virtio_cap(vd->pci, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF, ops->config_size, false)) ||
	    !add_virtio_cap(vd->pci, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
			    ops->num_queues * VIRTIO_PCI_NOTIFY_MULT, true) ||
	    !add_msix_cap(vd)) {
		log_error("%s: cannot set up its PCI function", ops->name);
		pthread_mutex_destroy(&vd->lock);
		free(vd); /* a slot taken on the bus stays, inert: the machine is not started */
		return NULL;
	}
	vd->pci->on_config_write = virtio_pci_config_written;
	pci_enable_intx(vd->pci);
	virtio_reset(vd);
	return vd;
}

void virtio_pci_destroy(struct virtio_dev *vd)
{
	if (!vd)
		return;
	pthread_mutex_lock(&vd->lock);
	virtio_reset(vd);
	pthread_mutex_unlock(&vd->lock);
	pthread_mutex_destroy(&vd->lock);
	free(vd);
}

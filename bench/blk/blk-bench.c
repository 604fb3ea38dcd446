/*
 * bench/blk: one row of the virtio-blk benchmark, the device side. The real
 * device model (src/dev/virtio-blk.c, the real virtqueue code and the real
 * block layer, raw format, O_DIRECT as with --disk ...,direct=on) serves a
 * simulated driver in this process; no guest, no KVM. run.sh runs fio on the
 * same file with the same pattern and prints the comparison.
 *
 * The path is the VMM's. KICK "vmm" (the default) does what the VMM does
 * for this disk; "iothread" forces the I/O thread path below for comparison.
 *
 * I/O thread path (a disk without a vCPU ring, e.g. aio=threads): the
 * driver publishes requests in the split ring in guest memory and kicks an
 * eventfd (what KVM's ioeventfd signals); the VMM's I/O thread
 * (src/vmm/iothread.c) wakes, reads the eventfd and calls the device's
 * queue_notify under the transport's lock, as src/vmm/virtio-host.c and
 * virtio_pci_kick() do; the device hands the requests to its ring or its
 * workers, whose completions signal the device's event fd
 * (its queue's wake fd, virtio_queue_info), which the I/O thread watches the same way and answers
 * with queue_notify again, which puts the finished requests in the used
 * ring and interrupts; the driver sleeps until that "interrupt" (an
 * eventfd standing in for the MSI), takes the completions and refills.
 *
 * vCPU path (a raw disk with io_uring, as the VMM runs it: the device
 * declares its queue VIRTIO_SERVE_VCPU): the driver thread plays the vCPU
 * thread. A kick is the MMIO exit: it calls queue_notify(VIRTIO_ON_VCPU)
 * under the transport's lock on the driver's own thread, as virtio-pci.c
 * does for the notify write (or, when another thread holds the lock, hands
 * the kick to the I/O thread through the kick eventfd, as virtio-pci.c
 * does; the device's own hand-over, virtio_queue_notify_later(), goes the
 * same way).
 * Waiting for the interrupt is the halted vCPU in KVM_RUN: the thread
 * sleeps in epoll_wait on the "MSI" eventfd, which returns for an
 * interrupt from the I/O thread or with -EINTR when io_uring task work
 * interrupts the sleep (KVM_RUN returns -EINTR for the same task work);
 * before every sleep and after every wake it does what the vCPU loop does
 * before KVM_RUN: virtio_pci_poll(), i.e. vcpu_work_done() and, if set,
 * queue_notify(VIRTIO_ON_VCPU) under the lock. The I/O thread runs as above for the
 * requests the device hands it.
 *
 * EVENT_IDX and indirect descriptors are negotiated as a Linux guest does,
 * and the driver honours avail_event / used_event like Linux's
 * virtio_ring.
 *
 * Queue depth QD means QD requests are in the ring at once: the driver
 * starts QD, and puts a new one in for each that completes.
 * Each request: an indirect table with the 16-byte header, the data
 * (one descriptor per SEG bytes, 4 KiB aligned), the status byte.
 *
 * usage: blk-bench FILE read|write|randread|randwrite BS QD SECONDS [SEG [AIO [KICK]]]
 * prints: "<ops> <seconds> <iops> <MB/s>" (MB = 10^6 bytes)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "dev/virtio-blk.h"
#include "dev/virtio.h"
#include "hv/mem.h"
#include "vmm/iothread.h"

#define QSIZE      256u
#define MAXQD      128u
#define DESC_GPA   0x10000u
#define AVAIL_GPA  0x20000u
#define USED_GPA   0x30000u
#define IND_GPA    0x100000u  /* one indirect table per slot, IND_STRIDE apart */
#define IND_STRIDE 0x8000u    /* up to 2048 descriptors */
#define HDR_GPA    0x800000u  /* 32 bytes per slot */
#define STAT_GPA   0x810000u  /* 1 byte per slot */
#define DATA_GPA   0x1000000u /* bs per slot */

static struct guest_mem mem;

/* ---- the fake transport (the five calls of dev/virtio.h) ---- */

struct virtio_dev {
	pthread_mutex_t lock;    /* the transport's lock, as in virtio-pci.c */
	int irq_fd;              /* eventfd: the device interrupted (the MSI) */
	int self_msi_fd;         /* eventfd nobody waits on: see raise_irq() */
	struct vq vq;
	unsigned long interrupts;
	bool broken;
};

static _Thread_local bool driver_thread;

/*
 * The MSI. From another thread it is KVM waking the halted vCPU: a write to
 * the eventfd the driver sleeps on. From the driver's own thread (the vCPU
 * path, completing in its poll before KVM_RUN) it is KVM_SIGNAL_MSI aimed
 * at the calling vCPU, which leaves the interrupt pending for the next
 * guest entry and wakes nobody: one syscall, modelled as a write to an
 * eventfd nobody waits on. (Writing irq_fd there would add an epoll_wait
 * and a read per request that the VMM does not have.)
 */
static void raise_irq(struct virtio_dev *vd)
{
	uint64_t one = 1;
	int fd = driver_thread ? vd->self_msi_fd : vd->irq_fd;
	if (write(fd, &one, sizeof(one)) != sizeof(one))
		perror("eventfd write");
}

struct vq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q == 0 && vd->vq.enabled ? &vd->vq : NULL;
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	(void)q;
	if (vq_should_interrupt(&vd->vq)) { /* an MSI would be sent */
		vd->interrupts++;
		raise_irq(vd);
	}
}

void virtio_config_changed(struct virtio_dev *vd) { (void)vd; }

void virtio_needs_reset(struct virtio_dev *vd, const char *why)
{
	fprintf(stderr, "blk-bench: device needs reset: %s\n", why);
	vd->broken = true;
	raise_irq(vd);
}

static struct virtio_dev vd = { .lock = PTHREAD_MUTEX_INITIALIZER, .irq_fd = -1,
				 .self_msi_fd = -1 };
static struct virtio_blk *blk;
static int kick_fd;

/* What the VMM's kick_later does: the queue's kick eventfd, which the I/O
 * thread serves after what else is ready. */
void virtio_queue_notify_later(struct virtio_dev *d, unsigned q)
{
	(void)d, (void)q;
	uint64_t one = 1;
	if (write(kick_fd, &one, sizeof(one)) != sizeof(one))
		perror("eventfd write");
}
static bool on_vcpu;   /* kicks on the driver's thread (see the header) */

/* What the vCPU loop does before each KVM_RUN (virtio_pci_poll). */
static void vcpu_poll(void)
{
	if (!on_vcpu || !virtio_blk_ops.vcpu_work_done(blk, 0))
		return;
	pthread_mutex_lock(&vd.lock);
	virtio_blk_ops.queue_notify(blk, &vd, 0, VIRTIO_ON_VCPU);
	pthread_mutex_unlock(&vd.lock);
}

/* What virtio-host.c's host_kick does on the I/O thread, for the kick
 * eventfd and for the device's completion eventfd alike. */
static void on_kick(void *ctx, uint32_t events)
{
	(void)events;
	int fd = *(const int *)ctx;
	uint64_t n;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&vd.lock);
	virtio_blk_ops.queue_notify(blk, &vd, 0, VIRTIO_ON_IO_THREAD);
	pthread_mutex_unlock(&vd.lock);
}

/* ---- the simulated driver ---- */

static struct vring_desc *desc;
static uint16_t *avail;        /* flags, idx, ring[QSIZE], used_event */
static volatile uint16_t *used_hdr;
static uint32_t *used_ring;    /* (id, len) pairs, then avail_event */
static uint16_t avail_idx, kicked_idx, used_seen;

static uint64_t bs, seg, disk_bytes, nblocks, next_off, rng = 0x9e3779b97f4a7c15ull;
static bool rand_io, write_io;

static uint64_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t pick_offset(void)
{
	if (rand_io)
		return (xorshift() % nblocks) * bs;
	uint64_t o = next_off;
	next_off = next_off + bs >= disk_bytes ? 0 : next_off + bs;
	return o;
}

static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* Puts request `slot` (descriptor `slot` as head) in the avail ring. */
static void submit(unsigned slot)
{
	uint64_t off = pick_offset();
	uint8_t *h = guest_mem_ptr(&mem, HDR_GPA + 32 * slot, 16);
	uint32_t type = write_io ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
	uint64_t sector = off / 512;
	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	uint64_t tab = IND_GPA + (uint64_t)slot * IND_STRIDE;
	struct vring_desc *t = guest_mem_ptr(&mem, tab, IND_STRIDE);
	unsigned n = 0;
	t[n++] = (struct vring_desc){ HDR_GPA + 32 * slot, 16, VRING_DESC_F_NEXT, 1 };
	uint64_t data = DATA_GPA + (uint64_t)slot * bs;
	for (uint64_t done = 0; done < bs; done += seg, n++)
		t[n] = (struct vring_desc){ data + done, (uint32_t)seg,
					    (uint16_t)(VRING_DESC_F_NEXT | (write_io ? 0 : VRING_DESC_F_WRITE)),
					    (uint16_t)(n + 1) };
	t[n++] = (struct vring_desc){ STAT_GPA + slot, 1, VRING_DESC_F_WRITE, 0 };
	desc[slot] = (struct vring_desc){ tab, 16 * n, VRING_DESC_F_INDIRECT, 0 };
	avail[2 + avail_idx % QSIZE] = (uint16_t)slot;
	avail_idx++;
	__atomic_store_n(&avail[1], avail_idx, __ATOMIC_RELEASE);
}

/* Linux's virtqueue_kick_prepare + notify: kick only if the device asked. */
static void kick(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t event = __atomic_load_n((uint16_t *)&used_ring[2 * QSIZE], __ATOMIC_ACQUIRE);
	if (need_event(event, avail_idx, kicked_idx)) {
		if (on_vcpu && pthread_mutex_trylock(&vd.lock) == 0) {
			/* The notify write's MMIO exit, served on this thread. */
			virtio_blk_ops.queue_notify(blk, &vd, 0, VIRTIO_ON_VCPU);
			pthread_mutex_unlock(&vd.lock);
		} else {
			/* The ioeventfd; or, on the vCPU path with the lock busy,
			 * the hand-over of virtio-pci.c lock_for_write(). */
			virtio_queue_notify_later(&vd, 0);
		}
	}
	kicked_idx = avail_idx;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int usage(void)
{
	fprintf(stderr, "usage: blk-bench FILE read|write|randread|randwrite BS QD SECONDS [SEG [AIO [KICK]]]\n"
		"  AIO: auto (default), threads or io_uring, as --disk ...,aio=\n"
		"  KICK: vmm (default: as the VMM does for this disk) or iothread\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 6)
		return usage();
	const char *path = argv[1], *rw = argv[2];
	bs = strtoull(argv[3], NULL, 0);
	unsigned qd = (unsigned)atoi(argv[4]);
	double secs = atof(argv[5]);
	seg = argc > 6 ? strtoull(argv[6], NULL, 0) : 4096;
	if (seg > bs)
		seg = bs;
	const char *aio = argc > 7 ? argv[7] : "auto";
	enum virtio_blk_aio aio_mode = VIRTIO_BLK_AIO_AUTO;
	if (strcmp(aio, "threads") == 0)
		aio_mode = VIRTIO_BLK_AIO_THREADS;
	else if (strcmp(aio, "io_uring") == 0)
		aio_mode = VIRTIO_BLK_AIO_IO_URING;
	else if (strcmp(aio, "auto") != 0)
		return usage();
	const char *kick_mode = argc > 8 ? argv[8] : "vmm";
	if (strcmp(kick_mode, "vmm") != 0 && strcmp(kick_mode, "iothread") != 0)
		return usage();
	rand_io = strncmp(rw, "rand", 4) == 0;
	write_io = strcmp(rw + (rand_io ? 4 : 0), "write") == 0;
	if ((strcmp(rw + (rand_io ? 4 : 0), "read") && !write_io) || bs < 4096 || bs % 4096 ||
	    seg % 4096 || bs % seg || bs / seg + 2 > IND_STRIDE / 16 || qd < 1 || qd > MAXQD ||
	    secs <= 0)
		return usage();

	log_init("blk-bench", LOG_LEVEL_WARN);
	/* New offsets every run, as fio's --randrepeat=0: a repeated run must
	 * not find the blocks of the last one in the host's cache. */
	rng ^= (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
	if (!guest_mem_alloc(&mem, DATA_GPA + (uint64_t)qd * bs + (1u << 20))) {
		fprintf(stderr, "blk-bench: cannot allocate guest memory\n");
		return 1;
	}
	struct virtio_blk_config cfg = { .path = path, .format = "raw", .direct = true,
					 .aio = aio_mode };
	blk = virtio_blk_create(&cfg, &mem);
	if (!blk)
		return 1;
	struct stat st;
	if (stat(path, &st) < 0)
		return 1;
	disk_bytes = (uint64_t)st.st_size / bs * bs;
	nblocks = disk_bytes / bs;

	vq_reset(&vd.vq, &mem);
	vd.vq.size = QSIZE;
	vd.vq.desc_gpa = DESC_GPA;
	vd.vq.avail_gpa = AVAIL_GPA;
	vd.vq.used_gpa = USED_GPA;
	if (!vq_enable(&vd.vq))
		return 1;
	uint64_t features = virtio_blk_ops.features(blk);
	if (!(features & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX_BIT)) ||
	    !(features & VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC_BIT))) {
		fprintf(stderr, "blk-bench: the device no longer offers EVENT_IDX and INDIRECT_DESC\n");
		return 1;
	}
	virtio_blk_ops.activate(blk, &vd, features);
	struct virtio_queue_info info = virtio_queue_info_of(&virtio_blk_ops, blk, 0);
	on_vcpu = strcmp(kick_mode, "vmm") == 0 && info.serve == VIRTIO_SERVE_VCPU;
	desc = guest_mem_ptr(&mem, DESC_GPA, 16 * QSIZE);
	avail = guest_mem_ptr(&mem, AVAIL_GPA, 6 + 2 * QSIZE);
	used_hdr = guest_mem_ptr(&mem, USED_GPA, 4);
	used_ring = guest_mem_ptr(&mem, USED_GPA + 4, 8 * QSIZE + 2);
	memset(guest_mem_ptr(&mem, DATA_GPA, (uint64_t)qd * bs), 0x5a, (uint64_t)qd * bs);

	kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vd.irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vd.self_msi_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	driver_thread = true;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event irq_ev = { .events = EPOLLIN };
	if (vd.irq_fd < 0 || vd.self_msi_fd < 0 || ep < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, vd.irq_fd, &irq_ev) < 0)
		return 1;
	struct iothread *io = iothread_create();
	static int done_fd, timer_fd;
	done_fd = info.wake_fd[0];
	timer_fd = info.wake_fd[1];
	if (kick_fd < 0 || !io || !iothread_watch(io, kick_fd, EPOLLIN, on_kick, &kick_fd) ||
	    (done_fd >= 0 && !iothread_watch(io, done_fd, EPOLLIN, on_kick, &done_fd)) ||
	    (timer_fd >= 0 && !iothread_watch(io, timer_fd, EPOLLIN, on_kick, &timer_fd)) ||
	    !iothread_start(io))
		return 1;

	unsigned long ops = 0, errors = 0;
	double t0 = now(), end = t0 + secs, t1;
	bool stopping = false;
	unsigned outstanding = 0;
	for (unsigned s = 0; s < qd; s++, outstanding++)
		submit(s);
	kick();
	for (;;) {
		/* Wait for the interrupt; used_event asks for one at the next
		 * completion. The vCPU polls before it "enters the guest" and
		 * whenever the sleep ends (an MSI, or -EINTR). */
		avail[2 + QSIZE] = used_seen; /* used_event */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		for (;;) {
			vcpu_poll();
			if (__atomic_load_n(&used_hdr[1], __ATOMIC_ACQUIRE) != used_seen || vd.broken)
				break;
			struct epoll_event ev;
			if (epoll_wait(ep, &ev, 1, -1) == 1) {
				uint64_t n;
				if (read(vd.irq_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
					return 1;
			}
		}
		if (vd.broken)
			return 1;
		uint16_t used = __atomic_load_n(&used_hdr[1], __ATOMIC_ACQUIRE);
		if (!stopping && now() >= end)
			stopping = true;
		for (; used_seen != used; used_seen++) {
			uint32_t slot = used_ring[2 * (used_seen % QSIZE)];
			uint8_t *status = guest_mem_ptr(&mem, STAT_GPA + slot, 1);
			if (*status != VIRTIO_BLK_S_OK)
				errors++;
			ops++;
			outstanding--;
			if (!stopping) {
				submit(slot);
				outstanding++;
			}
		}
		if (stopping && outstanding == 0)
			break;
		if (!stopping)
			kick();
	}
	t1 = now();
	iothread_destroy(io);
	close(kick_fd);
	close(ep);
	close(vd.irq_fd);
	close(vd.self_msi_fd);
	virtio_blk_ops.reset(blk);
	virtio_blk_destroy(blk);
	guest_mem_free(&mem);
	if (errors) {
		fprintf(stderr, "blk-bench: %lu of %lu requests failed\n", errors, ops);
		return 1;
	}
	double t = t1 - t0;
	printf("%lu %.3f %.0f %.1f\n", ops, t, ops / t, ops * (double)bs / t / 1e6);
	return 0;
}

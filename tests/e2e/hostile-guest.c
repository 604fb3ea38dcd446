/*
 * hostile-guest: the end-to-end program of the hostile-guest and VMM-crash
 * cases (tests/e2e/run.sh), built static like vsock-test so it runs in the
 * guest's busybox initramfs (as root there) and in L1 beside the VMM.
 *
 * In the guest:
 *   hostile-guest flood PORT SEND_S HOLD_S
 *       as many AF_VSOCK connections to the host (CID 2) PORT as it gets,
 *       each written as fast as it takes for SEND_S seconds, with churn
 *       (some closed and reopened, connects to PORT+1 where nobody
 *       listens), then all held idle for HOLD_S seconds; prints
 *       "PHASE flood-send", "PHASE flood-hold", then the result line
 *   hostile-guest resets SECONDS SKIP_BDF
 *       unbinds and rebinds the driver of every virtio device, by the virtio
 *       bus and by virtio-pci, in a loop (not the PCI function SKIP_BDF)
 *   hostile-guest malformed SKIP_BDF
 *       takes every virtio PCI function but SKIP_BDF away from its driver,
 *       drives BAR 0's modern common configuration itself with a queue in
 *       its own locked memory (guest-physical addresses from
 *       /proc/self/pagemap) and posts malformed rings: descriptor loops,
 *       addresses outside RAM, huge lengths, indirect tables that point at
 *       themselves or loop, an available index far ahead, a head outside
 *       the table, a ring outside RAM; after each kick the device must show
 *       DEVICE_NEEDS_RESET. Then a storm of status cycles (DRIVER_OK without
 *       FEATURES_OK), and the driver is given the function back.
 *   hostile-guest canary DEV STOPFILE
 *       writes, flushes and reads back 64 KiB blocks on DEV (O_DIRECT)
 *       until STOPFILE exists; the slowest round trip is reported
 *   hostile-guest writer DEV BLOCK
 *       writes numbered BLOCK-byte blocks to DEV in order, each followed by
 *       fdatasync (a flush), then "FLUSHED N" on stdout; never stops
 * On the VMM's host:
 *   hostile-guest sink --unix PATH
 *       accepts every connection on PATH and reads and discards everything
 *   hostile-guest ping --unix API_SOCKET
 *       one {"op":"ping"} on the VMM's control socket; "PASS <ms>" if it
 *       answers {"ok":true} within 3 s
 *   hostile-guest monitor WORD API_SOCKET CONSOLE LOG
 *       once a second, until the VMM whose command line holds WORD ends: a
 *       line "T ms own-cpu-ms guest-cpu-ms log-bytes ping-ms phase io-ms"
 *       (the VMM's CPU time less its guest's, ping -1 when the API did
 *       not answer, phase the last "SHOJI-PHASE x" of the console file,
 *       io the CPU time of its threads that run no guest: see io_ms); a
 *       log past 8 MiB gets the VMM killed (and "LOG-OVERFLOW")
 *   hostile-guest pidof WORD
 *       the pid of the process whose command line holds WORD
 *   hostile-guest verify IMAGE BLOCK LAST
 *       checks that every block 0..LAST of a raw IMAGE holds what writer
 *       wrote there (later blocks may hold anything)
 * Every mode prints "PASS ..." or "FAIL ..." last (monitor and writer do
 * not end by themselves); each has a deadline (alarm), so a hang fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Every path and name here is short (sysfs, /proc); a truncated one fails visibly. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define DEADLINE_S 900

static _Noreturn void die(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static long parse_num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 0);
	if (*s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "hostile-guest: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Writes a short string to a sysfs file; false (errno set) if refused. */
static bool write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)strlen(text);
}

static bool read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return true;
}

static void raise_nofile(void)
{
	struct rlimit rl = { 65536, 65536 };
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ---- flood: vsock connections, as many and as fast as they go ---- */

#define FLOOD_MAX 4096

static int vsock_open(unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { 2, 0 };
	setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof(tv));
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = port };
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static int flood(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: hostile-guest flood PORT SEND_S HOLD_S\n");
		return 2;
	}
	unsigned port = (unsigned)parse_num(argv[0]);
	long send_ms = parse_num(argv[1]) * 1000, hold_ms = parse_num(argv[2]) * 1000;
	static int fds[FLOOD_MAX];
	static struct pollfd pfd[FLOOD_MAX];
	static char buf[65536];
	memset(buf, 0x5a, sizeof(buf));
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	int n = 0, refused = 0;
	/* Open until the VMM's bound (or ours) says no, several times running. */
	long t_open = now_ms();
	while (n < FLOOD_MAX && refused < 16 && now_ms() - t_open < 60000) {
		int fd = vsock_open(port);
		if (fd < 0) {
			refused++;
			continue;
		}
		refused = 0;
		fds[n++] = fd;
	}
	if (n == 0)
		die("not a single vsock connection to the host");
	int max_open = n;
	say("PHASE flood-send");
	unsigned long long sent = 0;
	unsigned churned = 0, dead_refused = 0, dead_accepted = 0, send_errors = 0;
	long t0 = now_ms(), next_churn = t0;
	while (now_ms() - t0 < send_ms) {
		for (int i = 0; i < n; i++)
			pfd[i] = (struct pollfd){ fds[i], POLLOUT, 0 };
		poll(pfd, (nfds_t)n, 50);
		for (int i = 0; i < n; i++) {
			if (!(pfd[i].revents & (POLLOUT | POLLERR | POLLHUP)))
				continue;
			ssize_t w = send(fds[i], buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0) {
				sent += (unsigned long long)w;
			} else if (w < 0 && errno != EAGAIN) {
				send_errors++;
				close(fds[i]);
				fds[i] = fds[--n];
				i--;
			}
		}
		/* Churn: the oldest few closed and opened again, and connects to a
		 * port without a listener (the VMM answers each with a reset). */
		if (now_ms() >= next_churn) {
			next_churn = now_ms() + 200;
			for (int k = 0; k < 8 && n > 0; k++) {
				close(fds[0]);
				fds[0] = fds[--n];
			}
			for (int k = 0; k < 8 && n < FLOOD_MAX; k++) {
				int fd = vsock_open(port);
				if (fd >= 0) {
					fds[n++] = fd;
					churned++;
				}
			}
			for (int k = 0; k < 8; k++) {
				int fd = vsock_open(port + 1);
				if (fd >= 0) {
					dead_accepted++;
					close(fd);
				} else {
					dead_refused++;
				}
			}
			if (n > max_open)
				max_open = n;
		}
	}
	say("PHASE flood-hold");
	sleep_ms(hold_ms);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	say("PHASE flood-closed");
	printf("%s flood conns=%d open-at-end=%d sent-mib=%llu churned=%u dead-port-refused=%u "
	       "dead-port-accepted=%u send-errors=%u\n",
	       dead_accepted ? "FAIL" : "PASS", max_open, n, sent >> 20, churned, dead_refused,
	       dead_accepted, send_errors);
	return dead_accepted ? 1 : 0;
}

/* ---- the PCI functions of virtio devices ---- */

struct vdev {
	char bdf[32];      /* 0000:00:05.0 */
	char virtio[32];   /* virtio3, "" when no virtio driver has it */
	char driver[64];   /* the virtio driver bound now, "" for none */
	unsigned type;     /* virtio device id: 1 net, 2 blk, 4 rng, 19 vsock */
};

static const char *type_name(unsigned t)
{
	switch (t) {
	case 1: return "net";
	case 2: return "blk";
	case 4: return "rng";
	case 19: return "vsock";
	default: return "other";
	}
}

/* The virtio PCI functions (vendor 0x1af4, modern ids 0x1040+type). */
static int list_vdevs(struct vdev *out, int max)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	if (!d)
		return 0;
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) && n < max;) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX], v[32], dev[32];
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		if (!read_file(path, v, sizeof(v)) || strcmp(v, "0x1af4") != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", e->d_name);
		if (!read_file(path, dev, sizeof(dev)))
			continue;
		long id = strtol(dev, NULL, 16);
		if (id < 0x1040 || id > 0x107f)
			continue;
		struct vdev *vd = &out[n++];
		memset(vd, 0, sizeof(*vd));
		snprintf(vd->bdf, sizeof(vd->bdf), "%.31s", e->d_name);
		vd->type = (unsigned)(id - 0x1040);
	}
	closedir(d);
	return n;
}

/* Which virtio bus device (virtioN) sits on the function, and its driver. */
static void vdev_refresh(struct vdev *vd)
{
	vd->virtio[0] = vd->driver[0] = '\0';
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", vd->bdf);
	DIR *d = opendir(path);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));)
		if (strncmp(e->d_name, "virtio", 6) == 0 && e->d_name[6] >= '0' && e->d_name[6] <= '9')
			snprintf(vd->virtio, sizeof(vd->virtio), "%.31s", e->d_name);
	closedir(d);
	if (!vd->virtio[0])
		return;
	char link[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s/driver", vd->virtio);
	ssize_t l = readlink(path, link, sizeof(link) - 1);
	if (l > 0) {
		link[l] = '\0';
		const char *slash = strrchr(link, '/');
		snprintf(vd->driver, sizeof(vd->driver), "%.63s", slash ? slash + 1 : link);
	}
}

static bool pci_driver_bound(const char *bdf)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	return access(path, F_OK) == 0;
}

static bool pci_unbind(const char *bdf)
{
	return !pci_driver_bound(bdf) || write_file("/sys/bus/pci/drivers/virtio-pci/unbind", bdf);
}

static bool pci_bind(const char *bdf)
{
	return pci_driver_bound(bdf) || write_file("/sys/bus/pci/drivers/virtio-pci/bind", bdf);
}

/* ---- resets: drivers unbound and bound again, in a loop ---- */

static int resets(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: hostile-guest resets SECONDS SKIP_BDF\n");
		return 2;
	}
	long ms = parse_num(argv[0]) * 1000;
	const char *skip = argv[1];
	struct vdev devs[32];
	int n = list_vdevs(devs, 32);
	unsigned virtio_cycles = 0, pci_cycles = 0, failures = 0;
	char path[PATH_MAX], first_failure[160] = "";
	/* The driver each device had, so it can be bound again by name. */
	char drivers[32][64];
	for (int i = 0; i < n; i++) {
		vdev_refresh(&devs[i]);
		snprintf(drivers[i], sizeof(drivers[i]), "%s", devs[i].driver);
	}
	long t0 = now_ms();
	for (unsigned round = 0; now_ms() - t0 < ms; round++) {
		for (int i = 0; i < n; i++) {
			struct vdev *vd = &devs[i];
			if (strcmp(vd->bdf, skip) == 0 || !drivers[i][0])
				continue;
			bool ok;
			if (round % 2 == 0) {
				/* The virtio bus: the driver goes, the transport stays. */
				vdev_refresh(vd);
				snprintf(path, sizeof(path), "/sys/bus/virtio/drivers/%s/unbind", drivers[i]);
				ok = !vd->driver[0] || write_file(path, vd->virtio);
				snprintf(path, sizeof(path), "/sys/bus/virtio/drivers/%s/bind", drivers[i]);
				ok = write_file(path, vd->virtio) && ok;
				virtio_cycles++;
			} else {
				/* virtio-pci itself: the function is reset and set up again. */
				ok = pci_unbind(vd->bdf);
				ok = pci_bind(vd->bdf) && ok;
				pci_cycles++;
			}
			if (!ok) {
				failures++;
				if (!first_failure[0])
					snprintf(first_failure, sizeof(first_failure), "%s %s: %s",
						 type_name(vd->type), vd->bdf, strerror(errno));
			}
		}
	}
	/* Every function ends bound again, with its virtio driver. */
	unsigned unbound = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(devs[i].bdf, skip) == 0 || !drivers[i][0])
			continue;
		pci_bind(devs[i].bdf);
		for (int t = 0; t < 100; t++) {
			vdev_refresh(&devs[i]);
			if (devs[i].driver[0])
				break;
			sleep_ms(50);
		}
		if (!devs[i].driver[0]) {
			unbound++;
			printf("device %s %s has no driver after the resets\n", type_name(devs[i].type), devs[i].bdf);
		}
	}
	bool pass = unbound == 0 && virtio_cycles > 0 && pci_cycles > 0;
	printf("%s resets virtio=%u pci=%u failed=%u unbound=%u%s%s\n", pass ? "PASS" : "FAIL",
	       virtio_cycles, pci_cycles, failures, unbound, first_failure[0] ? " first-failure=" : "",
	       first_failure);
	return pass ? 0 : 1;
}

/* ---- malformed: our own driver posts what no driver should ---- */

/* virtio_pci_common_cfg */
#define CC_DFSELECT   0x00
#define CC_DF         0x04
#define CC_GFSELECT   0x08
#define CC_GF         0x0c
#define CC_MSIX       0x10
#define CC_STATUS     0x14
#define CC_QSELECT    0x16
#define CC_QSIZE      0x18
#define CC_QMSIX      0x1a
#define CC_QENABLE    0x1c
#define CC_QNOTIFYOFF 0x1e
#define CC_QDESC      0x20
#define CC_QAVAIL     0x28
#define CC_QUSED      0x30

#define S_ACK         1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40

#define F_INDIRECT    (1ull << 28)
#define F_VERSION_1   (1ull << 32)

#define D_NEXT        1
#define D_WRITE       2
#define D_INDIRECT    4

#define QSIZE 8u
#define PAGE 4096u

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct bar {
	volatile uint8_t *base;
	size_t len;
	uint32_t common, notify, isr, notify_mult;
};

static uint8_t rd8(struct bar *b, uint32_t off) { return b->base[b->common + off]; }
static uint16_t rd16(struct bar *b, uint32_t off) { return *(volatile uint16_t *)(b->base + b->common + off); }
static uint32_t rd32(struct bar *b, uint32_t off) { return *(volatile uint32_t *)(b->base + b->common + off); }
static void wr8(struct bar *b, uint32_t off, uint8_t v) { b->base[b->common + off] = v; }
static void wr16(struct bar *b, uint32_t off, uint16_t v) { *(volatile uint16_t *)(b->base + b->common + off) = v; }
static void wr32(struct bar *b, uint32_t off, uint32_t v) { *(volatile uint32_t *)(b->base + b->common + off) = v; }
static void wr64(struct bar *b, uint32_t off, uint64_t v)
{
	wr32(b, off, (uint32_t)v);
	wr32(b, off + 4, (uint32_t)(v >> 32));
}

/* The guest-physical address of a locked page of ours. */
static uint64_t gpa_of(void *p)
{
	static int fd = -1;
	if (fd < 0)
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0;
	if (fd < 0 || pread(fd, &e, 8, (off_t)((uintptr_t)p / PAGE * 8)) != 8 || !(e >> 63))
		return 0;
	uint64_t pfn = e & ((1ull << 55) - 1);
	return pfn ? pfn * PAGE + (uintptr_t)p % PAGE : 0;
}

/* Finds the common, notify and ISR structures in BAR 0 (the capability list). */
static bool find_caps(int cfg, struct bar *b)
{
	uint8_t c[256];
	if (pread(cfg, c, sizeof(c), 0) != (ssize_t)sizeof(c) || !(c[6] & 0x10))
		return false;
	bool common = false, notify = false;
	for (unsigned p = c[0x34] & 0xfc, hops = 0; p && p < 0xf0 && hops < 48; p = c[p + 1] & 0xfc, hops++) {
		if (c[p] != 0x09 || c[p + 4] != 0)
			continue; /* not a virtio capability, or not in BAR 0 */
		uint32_t off;
		memcpy(&off, &c[p + 8], 4);
		switch (c[p + 3]) {
		case 1: b->common = off; common = true; break;
		case 2: b->notify = off; memcpy(&b->notify_mult, &c[p + 16], 4); notify = true; break;
		case 3: b->isr = off; break;
		}
	}
	return common && notify;
}

struct ring {
	uint8_t *mem;              /* 4 locked pages: desc, avail, used, data */
	uint64_t gpa[4];
	struct desc *desc;
	volatile uint16_t *avail;
};

static bool ring_alloc(struct ring *r)
{
	r->mem = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (r->mem == MAP_FAILED || mlock(r->mem, 4 * PAGE) != 0)
		return false;
	memset(r->mem, 0, 4 * PAGE);
	for (int i = 0; i < 4; i++)
		if (!(r->gpa[i] = gpa_of(r->mem + i * PAGE)))
			return false;
	r->desc = (struct desc *)r->mem;
	r->avail = (volatile uint16_t *)(r->mem + PAGE);
	return true;
}

enum bad {
	BAD_LOOP, BAD_NEXT_OOB, BAD_ADDR_OOB, BAD_HUGE_LEN, BAD_INDIRECT_SELF, BAD_INDIRECT_LOOP,
	BAD_AVAIL_JUMP, BAD_HEAD_OOB, BAD_RING_OOB, BAD_COUNT
};
static const char *const bad_names[BAD_COUNT] = {
	"loop", "next-oob", "addr-oob", "huge-len", "indirect-self", "indirect-loop",
	"avail-jump", "head-oob", "ring-oob",
};

static void device_reset(struct bar *b)
{
	wr8(b, CC_STATUS, 0);
	for (int i = 0; i < 100 && rd8(b, CC_STATUS) != 0; i++)
		sleep_ms(10);
}

/*
 * One malformed submission on queue q: our driver sets the device up the
 * proper way, then posts `kind` and kicks. True when the device then says
 * DEVICE_NEEDS_RESET (within 2 s).
 */
static bool post_bad(struct bar *b, struct ring *r, unsigned q, enum bad kind, char *why, size_t whylen)
{
	device_reset(b);
	memset(r->mem, 0, 4 * PAGE);
	wr8(b, CC_STATUS, S_ACK);
	wr8(b, CC_STATUS, S_ACK | S_DRIVER);
	wr32(b, CC_DFSELECT, 0);
	uint64_t offered = rd32(b, CC_DF);
	wr32(b, CC_DFSELECT, 1);
	offered |= (uint64_t)rd32(b, CC_DF) << 32;
	uint64_t want = offered & (F_VERSION_1 | F_INDIRECT);
	wr32(b, CC_GFSELECT, 0);
	wr32(b, CC_GF, (uint32_t)want);
	wr32(b, CC_GFSELECT, 1);
	wr32(b, CC_GF, (uint32_t)(want >> 32));
	wr8(b, CC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(rd8(b, CC_STATUS) & S_FEATURES_OK)) {
		snprintf(why, whylen, "features %#llx refused", (unsigned long long)want);
		return false;
	}
	wr16(b, CC_QSELECT, (uint16_t)q);
	uint16_t max = rd16(b, CC_QSIZE);
	if (max == 0) {
		snprintf(why, whylen, "no queue %u", q);
		return false;
	}
	uint16_t size = max < QSIZE ? max : QSIZE;
	wr16(b, CC_QSIZE, size);
	wr16(b, CC_QMSIX, 0xffff);
	wr64(b, CC_QDESC, kind == BAD_RING_OOB ? 1ull << 40 : r->gpa[0]);
	wr64(b, CC_QAVAIL, r->gpa[1]);
	wr64(b, CC_QUSED, r->gpa[2]);
	wr16(b, CC_QENABLE, 1);
	wr8(b, CC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);

	uint64_t data = r->gpa[3], table = r->gpa[3] + 2048; /* the indirect table */
	struct desc *ind = (struct desc *)(r->mem + 3 * PAGE + 2048);
	struct desc *d = r->desc;
	uint16_t idx = 1, head = 0;
	switch (kind) {
	case BAD_LOOP:
		d[0] = (struct desc){ data, 16, D_NEXT, 1 };
		d[1] = (struct desc){ data + 16, 16, D_NEXT, 0 };
		break;
	case BAD_NEXT_OOB:
		d[0] = (struct desc){ data, 16, D_NEXT, (uint16_t)(size + 100) };
		break;
	case BAD_ADDR_OOB:
		d[0] = (struct desc){ 1ull << 40, 4096, 0, 0 };
		break;
	case BAD_HUGE_LEN:
		d[0] = (struct desc){ data, 0xffffffffu, 0, 0 };
		break;
	case BAD_INDIRECT_SELF:
		d[0] = (struct desc){ table, 2 * sizeof(struct desc), D_INDIRECT, 0 };
		ind[0] = (struct desc){ table, 2 * sizeof(struct desc), D_INDIRECT, 0 };
		ind[1] = (struct desc){ table, 2 * sizeof(struct desc), D_INDIRECT, 0 };
		break;
	case BAD_INDIRECT_LOOP:
		d[0] = (struct desc){ table, 2 * sizeof(struct desc), D_INDIRECT, 0 };
		ind[0] = (struct desc){ data, 16, D_NEXT, 1 };
		ind[1] = (struct desc){ data + 16, 16, D_NEXT, 0 };
		break;
	case BAD_AVAIL_JUMP:
		d[0] = (struct desc){ data, 16, 0, 0 };
		idx = 1000;
		break;
	case BAD_HEAD_OOB:
		head = 0xffff;
		break;
	case BAD_RING_OOB:
	case BAD_COUNT:
		break;
	}
	r->avail[2] = head;
	__atomic_store_n(&r->avail[1], idx, __ATOMIC_RELEASE);
	uint16_t noff = rd16(b, CC_QNOTIFYOFF);
	*(volatile uint16_t *)(b->base + b->notify + (uint32_t)noff * b->notify_mult) = (uint16_t)q;
	for (int i = 0; i < 200; i++) {
		uint8_t s = rd8(b, CC_STATUS);
		if (s & S_NEEDS_RESET)
			return true;
		sleep_ms(10);
	}
	snprintf(why, whylen, "status %#x, no NEEDS_RESET", rd8(b, CC_STATUS));
	return false;
}

/*
 * Status cycles as fast as MMIO goes: each DRIVER_OK without FEATURES_OK
 * breaks the device (one log line each, unless the VMM rate-limits them).
 */
static unsigned status_storm(struct bar *b, long ms)
{
	unsigned n = 0;
	long t0 = now_ms();
	while (now_ms() - t0 < ms) {
		for (int i = 0; i < 64; i++, n++) {
			wr8(b, CC_STATUS, 0);
			wr8(b, CC_STATUS, S_ACK | S_DRIVER | S_DRIVER_OK);
		}
	}
	return n;
}

/* The queue our driver abuses: one the device serves when kicked. */
static unsigned bad_queue(unsigned type)
{
	return type == 1 || type == 19 ? 1 : 0; /* net and vsock: transmit */
}

static bool malformed_one(struct vdev *vd, unsigned *ok_count, unsigned *storm)
{
	char path[PATH_MAX];
	*ok_count = 0;
	*storm = 0;
	if (!pci_unbind(vd->bdf)) {
		printf("device %s %s: unbind: %s\n", type_name(vd->type), vd->bdf, strerror(errno));
		return false;
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", vd->bdf);
	int cfg = open(path, O_RDWR | O_CLOEXEC);
	struct bar b = { 0 };
	if (cfg < 0 || !find_caps(cfg, &b)) {
		printf("device %s %s: no virtio capabilities in its config space\n", type_name(vd->type), vd->bdf);
		return false;
	}
	/* Memory decoding and bus mastering on, INTx off: nobody would take it. */
	uint16_t cmd = 0;
	if (pread(cfg, &cmd, 2, 4) != 2)
		return false;
	uint16_t mine = cmd | 0x2 | 0x4 | 0x400;
	if (pwrite(cfg, &mine, 2, 4) != 2)
		return false;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource0", vd->bdf);
	int res = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	struct stat st;
	if (res < 0 || fstat(res, &st) != 0 || st.st_size < 0x4000) {
		printf("device %s %s: cannot open BAR 0: %s\n", type_name(vd->type), vd->bdf, strerror(errno));
		return false;
	}
	b.len = (size_t)st.st_size;
	b.base = mmap(NULL, b.len, PROT_READ | PROT_WRITE, MAP_SHARED, res, 0);
	close(res);
	if (b.base == MAP_FAILED) {
		printf("device %s %s: cannot map BAR 0: %s\n", type_name(vd->type), vd->bdf, strerror(errno));
		return false;
	}
	struct ring r;
	if (!ring_alloc(&r)) {
		printf("device %s %s: no locked ring memory or no pagemap: %s\n", type_name(vd->type), vd->bdf,
		       strerror(errno));
		return false;
	}
	unsigned q = bad_queue(vd->type);
	for (int k = 0; k < BAD_COUNT; k++) {
		char why[96] = "";
		if (post_bad(&b, &r, q, (enum bad)k, why, sizeof(why)))
			(*ok_count)++;
		else
			printf("device %s %s: %s: %s\n", type_name(vd->type), vd->bdf, bad_names[k], why);
	}
	*storm = status_storm(&b, 2000);
	device_reset(&b);
	munmap((void *)b.base, b.len);
	munlock(r.mem, 4 * PAGE);
	munmap(r.mem, 4 * PAGE);
	pwrite(cfg, &cmd, 2, 4);
	close(cfg);
	return true;
}

static int malformed(int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: hostile-guest malformed SKIP_BDF\n");
		return 2;
	}
	const char *skip = argv[0];
	struct vdev devs[32];
	int n = list_vdevs(devs, 32), tried = 0;
	bool pass = true;
	for (int i = 0; i < n; i++) {
		struct vdev *vd = &devs[i];
		if (strcmp(vd->bdf, skip) == 0)
			continue;
		unsigned ok = 0, storm = 0;
		bool ran = malformed_one(vd, &ok, &storm);
		bool back = pci_bind(vd->bdf);
		printf("DEVICE %s %s needs-reset=%u/%u storm=%u rebound=%s\n", type_name(vd->type), vd->bdf,
		       ok, BAD_COUNT, storm, back ? "yes" : "no");
		fflush(stdout);
		pass = pass && ran && ok == BAD_COUNT && back;
		tried++;
	}
	printf("%s malformed devices=%d\n", pass && tried > 0 ? "PASS" : "FAIL", tried);
	return pass && tried > 0 ? 0 : 1;
}

/* ---- canary: the disk the hostile guest leaves alone keeps working ---- */

static int canary(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: hostile-guest canary DEV STOPFILE\n");
		return 2;
	}
	int fd = open(argv[0], O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		die("open");
	void *w, *rb;
	if (posix_memalign(&w, 4096, 65536) || posix_memalign(&rb, 4096, 65536))
		die("memalign");
	unsigned long ops = 0, bad = 0;
	long worst = 0;
	for (unsigned i = 0; access(argv[1], F_OK) != 0; i++) {
		memset(w, (int)(i * 37 + 1), 65536);
		off_t off = (off_t)(i % 256) * 65536;
		long t = now_ms();
		if (pwrite(fd, w, 65536, off) != 65536 || fdatasync(fd) != 0 ||
		    pread(fd, rb, 65536, off) != 65536 || memcmp(w, rb, 65536) != 0)
			bad++;
		t = now_ms() - t;
		if (t > worst)
			worst = t;
		ops++;
		sleep_ms(200);
	}
	printf("%s canary rounds=%lu failed=%lu slowest-ms=%ld\n", bad || !ops ? "FAIL" : "PASS", ops, bad, worst);
	return bad || !ops;
}

/* ---- writer and verify: numbered blocks, each flushed ---- */

/* Block n's byte i: distinct per block and offset; the first 16 bytes say n. */
static void fill_block(uint8_t *p, size_t len, uint64_t n)
{
	memcpy(p, "SHOJIBLK", 8);
	memcpy(p + 8, &n, 8);
	uint64_t x = n * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 16; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

static int writer(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: hostile-guest writer DEV BLOCK\n");
		return 2;
	}
	size_t bs = (size_t)parse_num(argv[1]);
	int fd = open(argv[0], O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		die("open");
	off_t size = lseek(fd, 0, SEEK_END);
	uint64_t nblocks = size > 0 ? (uint64_t)size / bs : 0;
	void *buf;
	if (!nblocks || bs % 4096 || posix_memalign(&buf, 4096, bs))
		die("block size");
	alarm(0);
	for (uint64_t n = 0;; n++) {
		fill_block(buf, bs, n);
		if (pwrite(fd, buf, bs, (off_t)((n % nblocks) * bs)) != (ssize_t)bs)
			die("write");
		if (fdatasync(fd) != 0)
			die("flush");
		printf("FLUSHED %llu\n", (unsigned long long)n);
		fflush(stdout);
	}
}

static int verify(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: hostile-guest verify IMAGE BLOCK LAST\n");
		return 2;
	}
	size_t bs = (size_t)parse_num(argv[1]);
	uint64_t last = (uint64_t)parse_num(argv[2]);
	int fd = open(argv[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open");
	off_t size = lseek(fd, 0, SEEK_END);
	uint64_t nblocks = size > 0 ? (uint64_t)size / bs : 0;
	uint8_t *got = malloc(bs), *want = malloc(bs);
	if (!got || !want || !nblocks)
		die("image");
	/* Each place holds the last flushed block written there, or a later one. */
	uint64_t places = last + 1 < nblocks ? last + 1 : nblocks, bad = 0;
	for (uint64_t p = 0; p < places; p++) {
		uint64_t expect = last - (last - p) % nblocks, n;
		if (pread(fd, got, bs, (off_t)(p * bs)) != (ssize_t)bs)
			die("read");
		memcpy(&n, got + 8, 8);
		bool ok = memcmp(got, "SHOJIBLK", 8) == 0 && n >= expect && n % nblocks == p;
		if (ok) {
			fill_block(want, bs, n);
			ok = memcmp(got, want, bs) == 0;
		}
		if (!ok && bad++ < 3) {
			if (memcmp(got, "SHOJIBLK", 8) != 0)
				printf("block at %llu: expected block %llu (or a later one), found no block header\n",
				       (unsigned long long)p, (unsigned long long)expect);
			else
				printf("block at %llu: expected block %llu (or a later one), found block %llu%s\n",
				       (unsigned long long)p, (unsigned long long)expect, (unsigned long long)n,
				       n >= expect ? " with damaged bytes" : "");
		}
	}
	printf("%s verify blocks=%llu damaged=%llu\n", bad ? "FAIL" : "PASS", (unsigned long long)places,
	       (unsigned long long)bad);
	return bad ? 1 : 0;
}

/* ---- the host's side ---- */

static int unix_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int sink(int argc, char **argv)
{
	if (argc != 2 || strcmp(argv[0], "--unix") != 0) {
		fprintf(stderr, "usage: hostile-guest sink --unix PATH\n");
		return 2;
	}
	raise_nofile();
	alarm(0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[1]);
	unlink(argv[1]);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0)
		die("listen");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	static char buf[1 << 16];
	say("READY");
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				int c;
				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct epoll_event ce = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				}
				continue;
			}
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
				close(fd);
		}
	}
}

/* Milliseconds the VMM's control socket took to answer a ping; -1: it did not. */
static long api_ping(const char *path)
{
	long t0 = now_ms();
	int fd = unix_connect(path);
	if (fd < 0)
		return -1;
	const char req[] = "{\"op\":\"ping\"}\n";
	char ans[128];
	size_t got = 0;
	bool ok = write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1);
	while (ok && got < sizeof(ans) - 1 && !memchr(ans, '\n', got)) {
		struct pollfd p = { fd, POLLIN, 0 };
		long left = 3000 - (now_ms() - t0);
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		ssize_t n = read(fd, ans + got, sizeof(ans) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	ans[got] = '\0';
	return strncmp(ans, "{\"ok\":true}", 11) == 0 ? now_ms() - t0 : -1;
}

static int ping(int argc, char **argv)
{
	if (argc != 2 || strcmp(argv[0], "--unix") != 0) {
		fprintf(stderr, "usage: hostile-guest ping --unix API_SOCKET\n");
		return 2;
	}
	long ms = api_ping(argv[1]);
	if (ms < 0) {
		printf("FAIL no answer to ping\n");
		return 1;
	}
	printf("PASS %ld\n", ms);
	return 0;
}

/* The pid of the process whose command line holds word; 0 if none. */
static int find_pid(const char *word)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int pid = 0;
	for (struct dirent *e; !pid && (e = readdir(d));) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == getpid())
			continue;
		char path[64], cmd[4096];
		snprintf(path, sizeof(path), "/proc/%.20s/cmdline", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		cmd[n] = '\0';
		if (strstr(cmd, word) && !strstr(cmd, "hostile-guest"))
			pid = atoi(e->d_name);
	}
	closedir(d);
	return pid;
}

/*
 * CPU time of all the process's threads, in ms: own (user + system less
 * the time spent running the guest) and guest. Fields 14, 15 and 43 of
 * /proc/PID/stat (utime, stime, guest_time; utime includes guest_time).
 */
static bool cpu_ms(int pid, long *own, long *guest)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (!read_file(path, buf, sizeof(buf)))
		return false;
	char *p = strrchr(buf, ')');
	if (!p)
		return false;
	unsigned long long f[64] = { 0 };
	int field = 3; /* p + 2 starts with field 3, the state */
	for (char *tok = strtok(p + 2, " "); tok && field < 64; tok = strtok(NULL, " "), field++)
		f[field] = strtoull(tok, NULL, 10);
	long tck = sysconf(_SC_CLK_TCK);
	*own = (long)((f[14] + f[15] - f[43]) * 1000 / (unsigned long long)tck);
	*guest = (long)(f[43] * 1000 / (unsigned long long)tck);
	return true;
}

/*
 * CPU time (ms) of the threads that do not run the guest (no guest_time of
 * their own): the I/O thread, the block workers, the main thread. Summed
 * as deltas per thread, so a thread that ends takes nothing back; a vCPU
 * thread's own time is mostly the host kernel's KVM work for its guest.
 */
static long io_ms(int pid)
{
	static struct { int tid; long ms; } seen[1024];
	static unsigned nseen;
	static long total;
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return total;
	long tck = sysconf(_SC_CLK_TCK);
	for (struct dirent *e; (e = readdir(d));) {
		int tid = atoi(e->d_name);
		if (tid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
		char *p;
		if (!read_file(path, buf, sizeof(buf)) || !(p = strrchr(buf, ')')))
			continue;
		unsigned long long f[64] = { 0 };
		int field = 3;
		for (char *tok = strtok(p + 2, " "); tok && field < 64; tok = strtok(NULL, " "), field++)
			f[field] = strtoull(tok, NULL, 10);
		long ms = (long)((f[14] + f[15]) * 1000 / (unsigned long long)tck);
		unsigned i = 0;
		while (i < nseen && seen[i].tid != tid)
			i++;
		if (i == nseen) {
			if (nseen == 1024)
				continue;
			seen[nseen++].tid = tid;
			seen[i].ms = 0;
		}
		if (f[43] == 0)
			total += ms - seen[i].ms;
		seen[i].ms = ms;
	}
	closedir(d);
	return total;
}

/* The last "SHOJI-PHASE x" line of the console file, read as it grows. */
static void console_phase(const char *path, off_t *pos, char *phase, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	static char buf[65536 + 128];
	static size_t keep;
	for (;;) {
		ssize_t n = pread(fd, buf + keep, sizeof(buf) - 128 - keep, *pos);
		if (n <= 0)
			break;
		*pos += n;
		size_t end = keep + (size_t)n, start = 0;
		for (size_t i = 0; i < end; i++) {
			if (buf[i] != '\n')
				continue;
			buf[i] = '\0';
			char *s = strstr(buf + start, "SHOJI-PHASE ");
			if (s)
				snprintf(phase, len, "%.*s", (int)strcspn(s + 12, " \r"), s + 12);
			start = i + 1;
		}
		keep = end - start < 128 ? end - start : 0;
		memmove(buf, buf + start, keep);
	}
	close(fd);
}

static int pidof_cmd(int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: hostile-guest pidof WORD\n");
		return 2;
	}
	int pid = find_pid(argv[0]);
	if (!pid)
		return 1;
	printf("%d\n", pid);
	return 0;
}

#define MONITOR_LOG_CAP (8ll << 20)

static int monitor(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: hostile-guest monitor WORD API_SOCKET CONSOLE LOG\n");
		return 2;
	}
	alarm(0);
	int pid = 0;
	for (int i = 0; i < 600 && !(pid = find_pid(argv[0])); i++)
		sleep_ms(100);
	if (!pid) {
		say("FAIL no process with '%s' in its command line", argv[0]);
		return 1;
	}
	char phase[64] = "boot";
	off_t pos = 0;
	long t0 = now_ms();
	for (;;) {
		long t = now_ms(), own, guest;
		if (!cpu_ms(pid, &own, &guest))
			break;
		console_phase(argv[2], &pos, phase, sizeof(phase));
		struct stat st;
		long long log = stat(argv[3], &st) == 0 ? (long long)st.st_size : -1;
		long ms = api_ping(argv[1]);
		long io = io_ms(pid);
		say("T %ld %ld %ld %lld %ld %s %ld", t - t0, own, guest, log, ms, phase, io);
		if (log > MONITOR_LOG_CAP) {
			/* A log without bound: stop it before it fills L1's memory. */
			say("LOG-OVERFLOW %lld", log);
			kill(pid, SIGKILL);
		}
		long spent = now_ms() - t;
		if (spent < 1000)
			sleep_ms(1000 - spent);
	}
	say("GONE %ld", now_ms() - t0);
	return 0;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "FAIL deadline reached\n";
	ssize_t w = write(1, msg, sizeof(msg) - 1);
	(void)w;
	_exit(1);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} modes[] = {
		{ "flood", flood }, { "resets", resets }, { "malformed", malformed },
		{ "canary", canary }, { "writer", writer }, { "verify", verify },
		{ "sink", sink }, { "ping", ping }, { "monitor", monitor }, { "pidof", pidof_cmd },
	};
	signal(SIGALRM, on_alarm);
	alarm(DEADLINE_S);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; argc >= 2 && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(argv[1], modes[i].name) == 0)
			return modes[i].fn(argc - 2, argv + 2);
	fprintf(stderr, "usage: hostile-guest flood|resets|malformed|canary|writer|verify|sink|ping|monitor|pidof ...\n");
	return 2;
}

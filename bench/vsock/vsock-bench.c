/*
 * bench/vsock: what the virtio-vsock data path costs against a plain Unix
 * socket pair, natively (no KVM). The "guest" is the simulated driver of
 * tests/unit/vsock_sim.h driving the real device (src/dev/virtio-vsock.c)
 * and the real host side (src/vmm/vsock-host.c) on the real I/O thread;
 * the host program is a thread on the other end of the Unix socket.
 *
 *   throughput: the guest writes 64 KiB packets (respecting its credit) to
 *               a host reader; baseline: 64 KiB writes into a socket pair
 *   latency:    1-byte round trips, guest -> host echo -> guest; baseline:
 *               1-byte ping-pong between two threads over a socket pair
 * The driver's kicks reach the device as in the VMM (mode "vmm", the
 * default): a kick of a queue virtio_vsock_ops declares VIRTIO_SERVE_VCPU (tx)
 * runs the device in the guest's own thread, as the VMM serves it on the
 * vCPU thread that exited; any other kick is a write to an eventfd (the
 * ioeventfd) that the I/O thread reads before it runs the queue. Mode
 * "eventfd" sends every kick through the I/O thread (the VMM before
 * 2026-12-02), "inline" runs every kick in the guest's thread.
 * Prints both figures and the ratios (throughput vsock/plain, latency
 * vsock/plain). usage: vsock-bench [MIB] [ROUNDTRIPS] [vmm|eventfd|inline]
 */
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../tests/unit/vsock_sim.h"
#include "base/log.h"
#include "vmm/iothread.h"
#include "vmm/vsock-host.h"

#define CHUNK 65536u
#define PORT  7000u

static struct sim sim;
static char sock_path[96];

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static double thread_cpu(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

/* Refills the rx queue to n buffers once fewer than half are left, with
 * one kick, as Linux's virtio_transport_rx_work refills (below half of
 * rx_buf_max_nr): a kick per buffer would wake the I/O thread every round. */
static void rx_keep(unsigned n, uint32_t size)
{
	pthread_mutex_lock(&sim.vd.lock);
	unsigned out = sim_rx_outstanding(&sim);
	pthread_mutex_unlock(&sim.vd.lock);
	if (out < n / 2)
		sim_rx_post(&sim, n - out, size);
}

/* Like a guest driver: sleeps until the device interrupts. */
static struct sim_pkt rx_wait(void)
{
	struct sim_pkt p;
	pthread_mutex_lock(&sim.vd.lock);
	while (!sim_rx_next(&sim, &p))
		pthread_cond_wait(&sim.vd.irq, &sim.vd.lock);
	pthread_mutex_unlock(&sim.vd.lock);
	return p;
}

/* The VMM's host_kick (vmm/virtio-host.c): an ioeventfd became readable. */
struct kick_source {
	int fd;
	unsigned queue;
};

static void on_kick(void *ctx, uint32_t events)
{
	(void)events;
	struct kick_source *k = ctx;
	uint64_t n;
	if (read(k->fd, &n, sizeof(n)) == sizeof(n))
		virtio_pci_kick(&sim.vd, k->queue);
}

/* Kicks of the queues in `eventfd_queues` go through the I/O thread. */
static bool watch_kicks(struct iothread *io, struct kick_source *k, uint32_t eventfd_queues)
{
	for (unsigned q = 0; q < 3; q++) {
		if (!(eventfd_queues & (1u << q)))
			continue;
		k[q] = (struct kick_source){ .fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), .queue = q };
		if (k[q].fd < 0 || !iothread_watch(io, k[q].fd, EPOLLIN, on_kick, &k[q]))
			return false;
		sim.kick_fd[q] = k[q].fd;
	}
	return true;
}

/* ---- host programs ---- */

static void *drain(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static uint8_t buf[1 << 20];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static void *echo(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char c;
	while (read(fd, &c, 1) == 1 && write(fd, &c, 1) == 1)
		;
	return NULL;
}

static int listen_port(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", sock_path, PORT);
	unlink(a.sun_path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0)
		abort();
	return fd;
}

/* A guest connection to host port PORT; the host program gets `fn`. */
static void guest_connect(uint32_t gport, void *(*fn)(void *), pthread_t *t)
{
	int lfd = listen_port();
	rx_keep(64, 4096);
	sim_tx(&sim, gport, PORT, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
	struct sim_pkt p;
	do /* skip what the previous connection still had coming */
		p = rx_wait();
	while (p.op != VSOCK_OP_RESPONSE || p.dst_port != gport);
	int fd = accept(lfd, NULL, NULL);
	close(lfd);
	pthread_create(t, NULL, fn, (void *)(intptr_t)fd);
}

/* ---- the measurements ---- */

/* Bytes per second; *busy: the sending thread's CPU time over the run's
 * wall time, near 1 when the sender is what limits the rate. */
static double vsock_throughput(uint64_t bytes, uint32_t gport, double *busy)
{
	pthread_t t;
	guest_connect(gport, drain, &t);
	/* The payloads sit in the driver's tx slots already, as a guest sends
	 * from pages its socket layer filled: the guest's own copy is the
	 * guest's cost (fio's buffer filling is not in bench/blk either), and
	 * the ratio is what the device path adds. COPY=1 in the environment
	 * counts the guest's copy too (the figures before 2026-12-01). */
	static uint8_t chunk[CHUNK];
	const void *payload = getenv("COPY") && strcmp(getenv("COPY"), "1") == 0 ? chunk : NULL;
	uint32_t sent = 0, fwd = 0, buf_alloc = VSOCK_CONN_BUF;
	uint64_t total = 0;
	double t0 = now(), c0 = thread_cpu();
	while (total < bytes) {
		uint32_t credit = buf_alloc - (sent - fwd);
		if (credit < CHUNK) {
			rx_keep(64, 4096);
			fwd = rx_wait().fwd_cnt;
			continue;
		}
		sim_tx(&sim, gport, PORT, VSOCK_OP_RW, 0, 1 << 20, 0, payload, CHUNK);
		sent += CHUNK;
		total += CHUNK;
	}
	double dt = now() - t0;
	*busy = (thread_cpu() - c0) / dt;
	sim_tx(&sim, gport, PORT, VSOCK_OP_SHUTDOWN, 3, 1 << 20, 0, NULL, 0);
	pthread_join(t, NULL);
	return (double)bytes / dt;
}

static double plain_throughput(uint64_t bytes, double *busy)
{
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pthread_t t;
	pthread_create(&t, NULL, drain, (void *)(intptr_t)sv[1]);
	static uint8_t chunk[CHUNK];
	double t0 = now(), c0 = thread_cpu();
	for (uint64_t total = 0; total < bytes; total += CHUNK)
		if (write(sv[0], chunk, CHUNK) != CHUNK)
			abort();
	double dt = now() - t0;
	*busy = (thread_cpu() - c0) / dt;
	close(sv[0]);
	pthread_join(t, NULL);
	close(sv[1]);
	return (double)bytes / dt;
}

static double vsock_latency(unsigned rounds, uint32_t gport)
{
	pthread_t t;
	guest_connect(gport, echo, &t);
	uint32_t got = 0;
	double t0 = now();
	for (unsigned i = 0; i < rounds; i++) {
		rx_keep(64, 4096);
		sim_tx(&sim, gport, PORT, VSOCK_OP_RW, 0, 1 << 20, got, "x", 1);
		struct sim_pkt p;
		do
			p = rx_wait();
		while (p.op != VSOCK_OP_RW || p.dst_port != gport);
		got += p.len;
	}
	double dt = now() - t0;
	sim_tx(&sim, gport, PORT, VSOCK_OP_SHUTDOWN, 3, 1 << 20, got, NULL, 0);
	pthread_join(t, NULL);
	return dt / rounds;
}

static double plain_latency(unsigned rounds)
{
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pthread_t t;
	pthread_create(&t, NULL, echo, (void *)(intptr_t)sv[1]);
	char c = 'x';
	double t0 = now();
	for (unsigned i = 0; i < rounds; i++)
		if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1)
			abort();
	double dt = now() - t0;
	close(sv[0]);
	pthread_join(t, NULL);
	close(sv[1]);
	return dt / rounds;
}

#define REPEATS 5u

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const double *v)
{
	double s[REPEATS];
	memcpy(s, v, sizeof(s));
	qsort(s, REPEATS, sizeof(s[0]), cmp_double);
	return s[REPEATS / 2];
}

/* The smallest and largest of the runs' own ratios a[i] / b[i]. */
static void ratio_range(const double *a, const double *b, double *lo, double *hi)
{
	*lo = *hi = a[0] / b[0];
	for (unsigned i = 1; i < REPEATS; i++) {
		double r = a[i] / b[i];
		*lo = r < *lo ? r : *lo;
		*hi = r > *hi ? r : *hi;
	}
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 512;
	unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 10000;
	const char *mode = argc > 3 ? argv[3] : "vmm";
	uint32_t eventfd_queues;
	if (strcmp(mode, "vmm") == 0) {
		eventfd_queues = 0;
		for (unsigned q = 0; q < 3; q++)
			if (virtio_queue_info_of(&virtio_vsock_ops, NULL, q).serve != VIRTIO_SERVE_VCPU)
				eventfd_queues |= 1u << q;
	} else if (strcmp(mode, "eventfd") == 0) {
		eventfd_queues = 7u;
	} else if (strcmp(mode, "inline") == 0) {
		eventfd_queues = 0;
	} else {
		fprintf(stderr, "usage: vsock-bench [MIB] [ROUNDTRIPS] [vmm|eventfd|inline]\n");
		return 2;
	}
	log_init("vsock-bench", LOG_LEVEL_ERROR);
	char dir[] = "/tmp/vsock-bench-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock_path, sizeof(sock_path), "%s/v.sock", dir);
	struct iothread *io = iothread_create();
	struct vsock_host *h = vsock_host_create(sock_path, io);
	if (!h)
		return 1;
	struct vsock_backend be = vsock_host_backend(h);
	static struct kick_source kicks[3];
	if (!sim_init(&sim, &be) || !vsock_host_start(h, sim.vs) ||
	    !watch_kicks(io, kicks, eventfd_queues) || !iothread_start(io))
		return 1;
	/* A guest sends from buffers it just filled and gets back at each tx
	 * completion: with 256 KiB of credit at most four 64 KiB payloads are
	 * in flight, so eight slots. A new 64 KiB of guest memory per packet
	 * (8 MiB in turn, as before 2026-12-02) is no guest's pattern, and had
	 * the device copy from colder memory than the plain writer's one hot
	 * buffer. */
	sim.tx_data_slots = 8;
	printf("kicks (%s): rx %s, tx %s\n", mode,
	       eventfd_queues & (1u << VIRTIO_VSOCK_QUEUE_RX) ? "eventfd -> I/O thread" : "in the guest's thread",
	       eventfd_queues & (1u << VIRTIO_VSOCK_QUEUE_TX) ? "eventfd -> I/O thread" : "in the guest's thread");

	/* REPEATS pairs, alternating which side goes first, so that a burst of
	 * other load on the host hits both sides alike; medians are reported. */
	double pt[REPEATS], vt[REPEATS], pl[REPEATS], vl[REPEATS], pc[REPEATS], vc[REPEATS];
	for (unsigned i = 0; i < REPEATS; i++) {
		if (i % 2) {
			vt[i] = vsock_throughput(mib << 20, 1000 + 2 * i, &vc[i]);
			pt[i] = plain_throughput(mib << 20, &pc[i]);
		} else {
			pt[i] = plain_throughput(mib << 20, &pc[i]);
			vt[i] = vsock_throughput(mib << 20, 1000 + 2 * i, &vc[i]);
		}
	}
	for (unsigned i = 0; i < REPEATS; i++) {
		if (i % 2) {
			vl[i] = vsock_latency(rounds, 1001 + 2 * i);
			pl[i] = plain_latency(rounds);
		} else {
			pl[i] = plain_latency(rounds);
			vl[i] = vsock_latency(rounds, 1001 + 2 * i);
		}
	}
	double mpt = median(pt), mvt = median(vt), mpl = median(pl), mvl = median(vl);
	double tlo, thi, llo, lhi;
	ratio_range(vt, pt, &tlo, &thi);
	ratio_range(vl, pl, &llo, &lhi);
	printf("64 KiB writes, %u x %llu MiB, medians:  plain %.0f MiB/s, vsock %.0f MiB/s, ratio %.2f "
	       "(goal >= 0.8; per run %.2f to %.2f)\n",
	       REPEATS, (unsigned long long)mib, mpt / (1 << 20), mvt / (1 << 20), mvt / mpt,
	       tlo, thi);
	printf("  sending thread busy (CPU time / wall time), medians: plain writer %.2f, guest %.2f\n",
	       median(pc), median(vc));
	printf("1-byte round trip, %u x %u rounds, medians:  plain %.1f us, vsock %.1f us, ratio %.2f "
	       "(goal <= 2; per run %.2f to %.2f)\n",
	       REPEATS, rounds, mpl * 1e6, mvl * 1e6, mvl / mpl, llo, lhi);

	iothread_destroy(io);
	vsock_host_detach_io(h);
	sim_fini(&sim);
	vsock_host_destroy(h);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : 1;
}

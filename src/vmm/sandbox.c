/*
 * seccomp allowlist (see sandbox.h). Each entry says why the running VMM
 * needs it; anything needed only while setting up is done before the
 * filter goes in and is not listed.
 */
#include "vmm/sandbox.h"

#include <asm/ioctls.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "vmm/exit.h"

struct allowed_syscall {
	int nr;
	const char *why;
};

#define ALLOW(name, reason) { SCMP_SYS(name), reason }

static const struct allowed_syscall allowed[] = {
	ALLOW(read, "console input, eventfds, signalfd"),
	ALLOW(write, "console output, eventfds, log lines"),
	ALLOW(close, "teardown; console clients"),
	ALLOW(epoll_wait, "the I/O thread's and the console thread's event loops"),
	ALLOW(epoll_pwait, "console thread event loop (newer libc)"),
	ALLOW(epoll_ctl, "console thread: input and output back-pressure"),
	ALLOW(poll, "main thread waits for a stop"),
	ALLOW(ppoll, "main thread waits for a stop (newer libc)"),
	ALLOW(futex, "mutexes, condition variables, thread joins"),
	ALLOW(set_robust_list, "set up by glibc in each new thread"),
	ALLOW(rseq, "registered by glibc in each new thread"),
	ALLOW(mmap, "thread stacks, malloc arenas"),
	ALLOW(munmap, "thread stacks, malloc, teardown of guest RAM"),
	ALLOW(mprotect, "thread stack guard pages"),
	ALLOW(madvise, "malloc returning memory; thread stacks at exit"),
	ALLOW(brk, "malloc"),
	ALLOW(rt_sigprocmask, "vCPU threads unblock the kick signal"),
	ALLOW(rt_sigreturn, "return from the kick signal handler"),
	ALLOW(rt_sigaction, "glibc installs its thread-cancellation handler at the first pthread_create"),
	ALLOW(tgkill, "kicking a vCPU thread out of KVM_RUN"),
	ALLOW(getpid, "pthread_kill"),
	ALLOW(gettid, "pthread_kill"),
	ALLOW(fcntl, "console: restoring the terminal's file flags"),
	ALLOW(accept4, "console, API and vsock sockets: accepting a client"),
	ALLOW(dup, "console socket: one descriptor per direction"),
	ALLOW(unlink, "removing the console socket at exit"),
	ALLOW(clock_gettime, "console flush deadline (when the vDSO is not used)"),
	ALLOW(clock_nanosleep, "sleeping in libc"),
	ALLOW(nanosleep, "sleeping in libc"),
	ALLOW(sched_yield, "libc spin loops"),
	ALLOW(sched_getaffinity, "glibc counting CPUs (sysconf, malloc's arena limit): the opens of "
				 "/sys and /proc it tries first fail in here, and it falls back to this"),
	ALLOW(restart_syscall, "interrupted sleeps resume"),
	ALLOW(getrandom, "virtio-rng"),
	ALLOW(pread64, "virtio-blk: image reads (raw and qcow2 metadata)"),
	ALLOW(pwrite64, "virtio-blk: image writes"),
	ALLOW(preadv, "virtio-blk: vectored reads into guest buffers"),
	ALLOW(pwritev, "virtio-blk: vectored writes from guest buffers"),
	ALLOW(preadv2, "virtio-blk: vectored reads (newer libc)"),
	ALLOW(pwritev2, "virtio-blk: vectored writes (newer libc)"),
	ALLOW(io_uring_enter, "virtio-blk: submitting and reaping reads and writes (the ring is "
			      "restricted to readv/writev of the image's registered descriptor)"),
	ALLOW(timerfd_settime, "virtio-blk: the vCPU ring's watchdog (see virtio-blk.c); "
			       "API and vsock sockets: the back-off when accept runs out of descriptors "
			       "(vmm/listener.c); vsock: retrying a connect to a full host backlog"),
	ALLOW(fdatasync, "virtio-blk: a guest flush reaches stable storage"),
	ALLOW(fsync, "virtio-blk: flush on close"),
	ALLOW(fallocate, "virtio-blk: discard and write-zeroes punch holes"),
	ALLOW(ftruncate, "qcow2: growing the image file"),
	ALLOW(lseek, "block layer: finding the image size"),
	ALLOW(fstat, "block layer: image size"),
	ALLOW(newfstatat, "block layer: image size (newer libc)"),
	ALLOW(exit, "thread exit"),
	ALLOW(exit_group, "process exit"),
};

/*
 * --net user: libslirp turns the guest's TCP, UDP and ICMP into sockets of
 * this process, on its own thread, at any time the guest asks.
 */
static const struct allowed_syscall allowed_net_user[] = {
	ALLOW(socket, "slirp: a socket per guest connection, UDP flow, DNS query or ping"),
	ALLOW(connect, "slirp: guest TCP connections and UDP flows to the outside"),
	ALLOW(setsockopt, "slirp: SO_REUSEADDR, SO_OOBINLINE, buffer sizes on its sockets"),
	ALLOW(getsockopt, "slirp: SO_ERROR when a non-blocking connect completes"),
	ALLOW(getsockname, "slirp: local address of accepted host-forward connections"),
	ALLOW(getpeername, "slirp: peer of a connection"),
	ALLOW(sendto, "slirp: data to host sockets (send is sendto)"),
	ALLOW(recvfrom, "slirp: data from host sockets (recv is recvfrom)"),
	ALLOW(sendmsg, "slirp: UDP and ICMP datagrams"),
	ALLOW(recvmsg, "slirp: UDP and ICMP datagrams, socket errors"),
	ALLOW(readv, "slirp: TCP data from the host into its socket buffers"),
	ALLOW(writev, "slirp: TCP data to the host"),
	ALLOW(shutdown, "slirp: half-closing a connection the guest half-closed"),
	ALLOW(accept, "slirp: a connection to a host forward"),
	ALLOW(newfstatat, "slirp: checks whether /etc/resolv.conf changed (DNS forwarding)"),
	ALLOW(statx, "slirp: the same check, newer libc"),
};

/* --net tap: frames to and from the tap descriptor opened at setup. */
static const struct allowed_syscall allowed_net_tap[] = {
	ALLOW(writev, "tap: a frame from guest memory, after the checked header copy"),
};

/* --vsock: host programs' Unix-socket connections, made at any time. */
static const struct allowed_syscall allowed_vsock[] = {
	ALLOW(connect, "vsock: a guest connection to host port P reaches PATH_P (retried while its backlog is full)"),
	ALLOW(sendmsg, "vsock: guest bytes to a host program, from guest memory"),
	ALLOW(recvmsg, "vsock: host bytes into the guest's rx buffers"),
	ALLOW(sendto, "vsock: the OK or ERR line of the handshake (send is sendto)"),
	ALLOW(recvfrom, "vsock: the CONNECT line, a byte at a time (recv is recvfrom)"),
	ALLOW(shutdown, "vsock: EOF to a host program when the guest shuts down or resets"),
};

/* ioctl is allowed only with these requests. */
static const struct {
	unsigned long request;
	const char *why;
} allowed_ioctls[] = {
	{ KVM_RUN, "running a vCPU" },
	{ KVM_IRQ_LINE, "device interrupts" },
	{ KVM_SIGNAL_MSI, "virtio interrupts (MSI-X)" },
	{ KVM_IOEVENTFD, "attaching and detaching virtqueue notifications" },
	{ KVM_GET_REGS, "RIP for a crash report" },
	{ KVM_GET_SREGS, "telling a reset triple fault from a crash" },
	{ KVM_KVMCLOCK_CTRL, "telling a paused guest's kvmclock it was paused" },
	{ TCSETS, "restoring the terminal" },
	{ TCGETS, "glibc's tcsetattr reads the settings back to verify them" },
};

static void sandbox_report(int sig, siginfo_t *info, void *uctx)
{
	(void)sig;
	(void)uctx;
	/* Only async-signal-safe calls here: format the number by hand. */
	char msg[96] = "shoji-vmm: error: seccomp: blocked system call ";
	size_t len = strlen(msg);
	char digits[12];
	int n = 0;
	unsigned nr = (unsigned)info->si_syscall;
	do {
		digits[n++] = (char)('0' + nr % 10);
		nr /= 10;
	} while (nr && n < (int)sizeof(digits));
	while (n > 0 && len < sizeof(msg) - 2)
		msg[len++] = digits[--n];
	msg[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, msg, len);
	(void)w;
	_exit(VMM_EXIT_FAILURE);
}

static bool sandbox_install_reporter(void)
{
	struct sigaction sa = { .sa_sigaction = sandbox_report, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGSYS, &sa, NULL) == 0;
}

static int sandbox_add_list(scmp_filter_ctx ctx, const struct allowed_syscall *list, size_t n)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, list[i].nr, 0);
	return rc;
}

/* The rules the back ends of this VM need on top of the base list. */
static int sandbox_add_needs(scmp_filter_ctx ctx, unsigned needs)
{
	int rc = 0;
	if (needs & SANDBOX_NET_USER) {
		rc = sandbox_add_list(ctx, allowed_net_user, ARRAY_SIZE(allowed_net_user));
		/* slirp re-reads /etc/resolv.conf when it changes: read-only opens only. */
		if (rc == 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
					      SCMP_A2(SCMP_CMP_MASKED_EQ,
						      O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND,
						      O_RDONLY));
		/* slirp sizes a pending UDP datagram before receiving it. */
		if (rc == 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					      SCMP_A1(SCMP_CMP_EQ, FIONREAD));
	}
	/*
	 * Any other open fails with EACCES instead of ending the VMM: glibc's
	 * malloc opens /proc/sys/vm/overcommit_memory the first time it trims
	 * a thread's heap (seen on the I/O thread after vsock connections
	 * closed) and carries on without it. Files the VMM needs are opened
	 * before the filter goes in.
	 */
	if (rc == 0 && !(needs & SANDBOX_NET_USER))
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
	if (rc == 0 && (needs & SANDBOX_VSOCK)) {
		rc = sandbox_add_list(ctx, allowed_vsock, ARRAY_SIZE(allowed_vsock));
		/* Only Unix sockets: a guest connection never becomes a network one. */
		if (rc == 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
					      SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	}
	if (rc == 0 && (needs & SANDBOX_NET_TAP)) {
		rc = sandbox_add_list(ctx, allowed_net_tap, ARRAY_SIZE(allowed_net_tap));
		/* The guest's accepted receive offloads, set at each driver start and reset. */
		if (rc == 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					      SCMP_A1(SCMP_CMP_EQ, TUNSETOFFLOAD));
	}
	return rc;
}

/*
 * Threads, never processes: clone only with CLONE_THREAD (vCPU, I/O,
 * console, slirp and block worker threads), so a compromised VMM cannot
 * fork a helper process. clone3 passes its flags in memory, where a filter
 * cannot look: it fails with ENOSYS and glibc falls back to clone.
 */
static int sandbox_add_threads(scmp_filter_ctx ctx)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				  SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	return rc;
}

bool sandbox_enter_with(unsigned needs)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/*
	 * Sanitizer test builds only: LeakSanitizer's check at exit stops the
	 * threads with ptrace from a tracer thread, which no sensible filter
	 * allows. Those builds check memory; the normal build checks the filter.
	 */
	log_debug("sanitizer build: the seccomp filter is not installed");
	return true;
#endif
	if (!sandbox_install_reporter()) {
		log_error("seccomp: cannot install the SIGSYS handler: %m");
		return false;
	}
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx) {
		log_error("seccomp: cannot create a filter");
		return false;
	}
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(allowed); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i].nr, 0);
	for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(allowed_ioctls); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_EQ, allowed_ioctls[i].request));
	if (rc == 0)
		rc = sandbox_add_threads(ctx);
	if (rc == 0)
		rc = sandbox_add_needs(ctx, needs);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc != 0) {
		log_error("seccomp: cannot load the filter: %s", strerror(-rc));
		return false;
	}
	return true;
}

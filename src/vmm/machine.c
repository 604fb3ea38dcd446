/*
 * Machine assembly and the vCPU run loop (see machine.h).
 *
 * Threads: the caller's thread waits for a stop (signal or guest event) and
 * tears down; each vCPU has a thread that loops on KVM_RUN and dispatches
 * port I/O and MMIO exits to the buses; the console has its own thread.
 * Stopping is one-way: the first reason recorded wins, every vCPU is kicked
 * out of KVM_RUN (immediate_exit plus a signal), and threads are joined.
 */
#include "vmm/machine.h"

#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/ratelimit.h"
#include "base/util.h"
#include "dev/bus.h"
#include "dev/i8042.h"
#include "dev/pci.h"
#include "dev/pm.h"
#include "dev/pvpanic.h"
#include "dev/reset.h"
#include "dev/rtc.h"
#include "dev/serial.h"
#include "hv/acpi.h"
#include "hv/kvm.h"
#include "hv/layout.h"
#include "hv/vcpu.h"
#include "vmm/api.h"
#include "vmm/console.h"
#include "vmm/devices.h"
#include "vmm/exit.h"
#include "vmm/iothread.h"
#include "vmm/jail.h"
#include "vmm/sandbox.h"
#include "vmm/virtio-host.h"

#define KICK_SIGNAL SIGUSR1

struct machine;

struct vcpu_slot {
	struct machine *m;
	struct vcpu vcpu;
	pthread_t thread;
	bool created;
	bool started;
};

struct machine {
	const struct machine_config *cfg;
	struct kvm_vm vm;
	bool vm_created;
	bool images_released;
	unsigned ncpus;
	struct vcpu_slot *slots;

	struct bus pio;
	struct bus mmio;
	struct serial *serial;
	struct rtc *rtc;
	struct pm *pm;
	struct reset_ctl reset;
	struct i8042 kbc;
	struct console *console;
	struct pci_bus pci;
	bool pci_ready;
	struct iothread *io;
	struct virtio_host *virtio;
	struct pvpanic pvpanic;
	/* --on-panic pause: vCPUs stop, the process waits for a signal, then exits 5. */
	atomic_bool vcpus_halted;
	atomic_bool panicked;
	/* Each device kind's state, by its row in vmm_devices[] (vmm/devices.h). */
	void *devices[VMM_NDEVICES];
	struct vmm_api *api;      /* --api-socket */

	int done_fd;
	int signal_fd;
	/* Held while vCPU threads are created, so a stop kicks every one of them. */
	pthread_mutex_t start_lock;
	/* "pause" and "resume" on the control socket: vCPUs wait on pause_cv. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cv;
	atomic_bool pause_wanted;
	atomic_bool stopping;
	atomic_int exit_code;
	atomic_uint_fast8_t port_logged[65536 / 8];
};

/* Makes every running vCPU leave KVM_RUN and look at the machine's state. */
static void machine_kick_vcpus(struct machine *m)
{
	pthread_mutex_lock(&m->start_lock);
	for (unsigned i = 0; m->slots && i < m->ncpus; i++) {
		struct vcpu_slot *s = &m->slots[i];
		if (!s->started)
			continue;
		s->vcpu.run->immediate_exit = 1;
		pthread_kill(s->thread, KICK_SIGNAL);
	}
	pthread_mutex_unlock(&m->start_lock);
}

static void machine_stop(struct machine *m, enum vmm_exit code)
{
	bool expected = false;
	if (!atomic_compare_exchange_strong(&m->stopping, &expected, true))
		return;
	atomic_store(&m->exit_code, (int)code);
	/* A vCPU blocked on a full console must not hold up the stop. */
	if (m->serial)
		serial_shutdown(m->serial);
	machine_kick_vcpus(m);
	pthread_mutex_lock(&m->pause_lock); /* a paused vCPU wakes to see the stop */
	pthread_cond_broadcast(&m->pause_cv);
	pthread_mutex_unlock(&m->pause_lock);
	uint64_t one = 1;
	ssize_t w = write(m->done_fd, &one, sizeof(one));
	(void)w;
}

static void machine_power_request(void *ctx, enum power_event ev, const char *source)
{
	struct machine *m = ctx;
	if (ev == POWER_OFF) {
		log_info("guest powered off (%s)", source);
		machine_stop(m, VMM_EXIT_POWEROFF);
	} else {
		log_info("guest rebooted (%s)", source);
		machine_stop(m, VMM_EXIT_REBOOT);
	}
}

static void machine_set_irq(void *ctx, unsigned gsi, int level)
{
	struct machine *m = ctx;
	kvm_vm_set_irq_line(&m->vm, gsi, level);
}

/*
 * Lines the guest can cause as often as it likes (a pvpanic write, an
 * access nobody claims), each through a limit. One VMM runs one VM, so
 * these are per-VM limits.
 */
static struct ratelimit crash_loaded_limit = RATELIMIT_GUEST;
static struct ratelimit unclaimed_limit = RATELIMIT_GUEST;
static struct ratelimit bad_exit_limit = RATELIMIT_GUEST;

static void machine_guest_panic(void *ctx, uint8_t events)
{
	struct machine *m = ctx;
	if (!(events & PVPANIC_EVENT_PANICKED)) {
		log_limited(&crash_loaded_limit, LOG_LEVEL_INFO, "guest loaded a crash kernel (pvpanic)");
		return;
	}
	if (atomic_exchange(&m->panicked, true))
		return;
	if (m->cfg->opts->on_panic_pause) {
		log_error("guest kernel panicked (pvpanic); vCPUs stopped for inspection, "
			  "send SIGTERM to end the VM");
		atomic_store(&m->vcpus_halted, true);
		machine_kick_vcpus(m);
	} else {
		log_error("guest kernel panicked (pvpanic)");
		machine_stop(m, VMM_EXIT_PANIC);
	}
}

static void machine_console_quit(void *ctx)
{
	log_info("stopping the VM (Ctrl-a x on the console)");
	machine_stop(ctx, VMM_EXIT_STOPPED);
}

/* Logs the first access to each unclaimed port (a guest probing is normal),
 * through a limit: a guest can still walk all 65536 of them. */
static void machine_note_unclaimed_port(struct machine *m, uint16_t port, bool write)
{
	uint_fast8_t bit = (uint_fast8_t)(1u << (port % 8));
	uint_fast8_t old = atomic_fetch_or(&m->port_logged[port / 8], bit);
	if (!(old & bit))
		log_limited(&unclaimed_limit, LOG_LEVEL_DEBUG, "guest %s unclaimed I/O port 0x%x",
			    write ? "wrote" : "read", port);
}

static void machine_handle_io(struct machine *m, struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t size = run->io.size, count = run->io.count;
	if (size < 1 || size > 4 || count == 0 ||
	    !range_within(run->io.data_offset, size * count, (uint64_t)v->run_size)) {
		log_limited(&bad_exit_limit, LOG_LEVEL_WARN, "vCPU %u: malformed port I/O exit from KVM ignored",
			    v->index);
		return;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	for (uint64_t i = 0; i < count; i++, data += size) {
		bool claimed = write ? bus_write(&m->pio, run->io.port, data, (unsigned)size)
				     : bus_read(&m->pio, run->io.port, data, (unsigned)size);
		if (!claimed)
			machine_note_unclaimed_port(m, run->io.port, write);
	}
}

static void machine_handle_mmio(struct machine *m, struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned len = run->mmio.len;
	if (len < 1 || len > 8) {
		log_limited(&bad_exit_limit, LOG_LEVEL_WARN, "vCPU %u: malformed MMIO exit from KVM ignored",
			    v->index);
		return;
	}
	bool claimed = run->mmio.is_write
			       ? bus_write(&m->mmio, run->mmio.phys_addr, run->mmio.data, len)
			       : bus_read(&m->mmio, run->mmio.phys_addr, run->mmio.data, len);
	if (!claimed)
		log_limited(&unclaimed_limit, LOG_LEVEL_DEBUG, "guest %s unclaimed MMIO at 0x%llx",
			    run->mmio.is_write ? "wrote" : "read", (unsigned long long)run->mmio.phys_addr);
}

static void machine_vcpu_crashed(struct machine *m, struct vcpu *v, const char *what)
{
	log_error("vCPU %u: %s at RIP 0x%llx; stopping the VM", v->index, what,
		  (unsigned long long)vcpu_rip(v));
	machine_stop(m, VMM_EXIT_CRASH);
}

static void machine_handle_system_event(struct machine *m, struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		machine_power_request(m, POWER_OFF, "system event");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		machine_power_request(m, POWER_RESET, "system event");
		break;
	default:
		machine_vcpu_crashed(m, v, "KVM system event (crash)");
		break;
	}
}

static void machine_handle_shutdown(struct machine *m, struct vcpu *v)
{
	if (vcpu_idt_empty(v)) {
		log_info("guest rebooted (triple fault with an empty IDT)");
		machine_stop(m, VMM_EXIT_REBOOT);
	} else if (vcpu_in_reset_state(v)) {
		machine_vcpu_crashed(m, v, "triple fault (KVM_EXIT_SHUTDOWN; KVM reset the vCPU's registers, "
					   "as on AMD, so where it faulted is unknown)");
	} else {
		machine_vcpu_crashed(m, v, "triple fault (KVM_EXIT_SHUTDOWN)");
	}
}

/* Handles one exit; false when this vCPU must not run again. */
static bool machine_handle_exit(struct machine *m, struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[96];
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		machine_handle_io(m, v);
		return true;
	case KVM_EXIT_MMIO:
		machine_handle_mmio(m, v);
		return true;
	case KVM_EXIT_HLT:
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		machine_handle_shutdown(m, v);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		machine_handle_system_event(m, v);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM internal error (suberror %u)", run->internal.suberror);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed (hardware reason 0x%llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	default:
		snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
		break;
	}
	machine_vcpu_crashed(m, v, what);
	return false;
}

/*
 * Pause: the control socket's thread sets pause_wanted and kicks; each vCPU
 * leaves KVM_RUN, tells the guest's kvmclock it was stopped by the host (so
 * its soft-lockup watchdog does not count the pause), and waits here until
 * resume or stop. The guest's clocks keep the host's time across a pause;
 * devices keep completing requests already made.
 */
static void vcpu_park(struct machine *m, struct vcpu_slot *s)
{
	pthread_mutex_lock(&m->pause_lock);
	vcpu_tell_paused(&s->vcpu);
	while (atomic_load(&m->pause_wanted) && !atomic_load(&m->stopping))
		pthread_cond_wait(&m->pause_cv, &m->pause_lock);
	pthread_mutex_unlock(&m->pause_lock);
}

static void machine_pause(void *ctx, bool pause)
{
	struct machine *m = ctx;
	if (atomic_exchange(&m->pause_wanted, pause) == pause)
		return;
	log_info("control socket: vCPUs %s", pause ? "paused" : "resumed");
	if (pause) {
		machine_kick_vcpus(m);
		return;
	}
	pthread_mutex_lock(&m->pause_lock);
	pthread_cond_broadcast(&m->pause_cv);
	pthread_mutex_unlock(&m->pause_lock);
}

static bool machine_paused(void *ctx)
{
	struct machine *m = ctx;
	return atomic_load(&m->pause_wanted);
}

static void kick_handler(int sig)
{
	(void)sig; /* only there to make KVM_RUN return -EINTR */
}

static void *vcpu_thread(void *arg)
{
	struct vcpu_slot *s = arg;
	struct machine *m = s->m;
	sigset_t kick;
	sigemptyset(&kick);
	sigaddset(&kick, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	while (!atomic_load(&m->stopping) && !atomic_load(&m->vcpus_halted)) {
		/* Disk reads this thread submitted finish as task work that
		 * makes KVM_RUN return -EINTR: return them to the guest here. */
		if (m->virtio)
			virtio_host_poll(m->virtio);
		if (atomic_load(&m->pause_wanted)) {
			vcpu_park(m, s);
			continue;
		}
		int rc = vcpu_run(&s->vcpu);
		if (rc == -EINTR || rc == -EAGAIN) {
			/*
			 * A kick (stop, pause) set immediate_exit; it is cleared
			 * for the next KVM_RUN, and the loop then looks at the
			 * flags again: the fence keeps that look after the
			 * clearing, so a stop kicked in between is still seen.
			 */
			s->vcpu.run->immediate_exit = 0;
			atomic_thread_fence(memory_order_seq_cst);
			continue;
		}
		if (rc < 0) {
			log_error("vCPU %u: KVM_RUN failed: %s", s->vcpu.index, strerror(-rc));
			machine_stop(m, VMM_EXIT_CRASH);
			break;
		}
		if (!machine_handle_exit(m, &s->vcpu))
			break;
	}
	return NULL;
}

/* The signals that stop the VM (exit status 6, or 5 after a paused panic). */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

void machine_block_signals(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(KICK_SIGNAL, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	sigset_t set;
	stop_signals(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* The images are in guest RAM now (or never will be): let them go. */
static void machine_release_images(struct machine *m)
{
	if (m->images_released)
		return;
	m->images_released = true;
	if (m->cfg->kernel)
		munmap(m->cfg->kernel, m->cfg->kernel_size);
	if (m->cfg->initrd)
		munmap(m->cfg->initrd, m->cfg->initrd_size);
}

static bool machine_load_guest(struct machine *m)
{
	const struct machine_config *cfg = m->cfg;
	uint8_t *acpi = guest_mem_ptr(&m->vm.mem, LAYOUT_ACPI_ADDR, LAYOUT_ACPI_MAX);
	struct acpi_tables tables;
	if (!acpi || !acpi_build(acpi, LAYOUT_ACPI_MAX, LAYOUT_ACPI_ADDR, m->ncpus, &tables)) {
		log_error("cannot build the ACPI tables for %u vCPUs", m->ncpus);
		return false;
	}
	bool loaded = boot_load(&m->vm.mem, cfg->kernel_info, cfg->kernel, cfg->kernel_size,
				cfg->initrd, cfg->plan, cfg->opts->cmdline, tables.rsdp_gpa);
	machine_release_images(m);
	if (!loaded)
		log_error("cannot place the kernel in guest memory");
	return loaded;
}

static bool machine_add_devices(struct machine *m)
{
	struct power_sink power = { machine_power_request, m };
	m->serial = serial_create((struct irq_line){ machine_set_irq, m, IRQ_COM1 }, 0);
	m->rtc = rtc_create(NULL);
	m->pm = pm_create((struct irq_line){ machine_set_irq, m, IRQ_SCI }, power);
	m->reset.power = power;
	m->kbc.power = power;
	m->pci_ready = pci_bus_init(&m->pci);
	if (m->pci_ready) /* PCI INTx, for drivers that leave MSI-X off */
		pci_bus_set_intx_sink(&m->pci, machine_set_irq, m);
	if (!m->serial || !m->rtc || !m->pm || !m->pci_ready) {
		log_error("out of memory creating devices");
		return false;
	}
	/* The reset register at 0xcf9 is reached through the PCI config ports. */
	return bus_add(&m->pio, PORT_COM1, SERIAL_PORT_COUNT, &serial_io_ops, m->serial, "COM1") &&
	       bus_add(&m->pio, PORT_RTC, RTC_PORT_COUNT, &rtc_io_ops, m->rtc, "CMOS RTC") &&
	       bus_add(&m->pio, PORT_PM1A_EVT, PM_PORT_COUNT, &pm_io_ops, m->pm, "ACPI PM1a") &&
	       bus_add(&m->pio, PORT_I8042_DATA, I8042_PORT_COUNT, &i8042_io_ops, &m->kbc, "i8042") &&
	       pci_bus_attach(&m->pci, &m->pio, &m->mmio, &reset_io_ops, &m->reset);
}

static void machine_power_button(void *ctx)
{
	pm_press_power_button(((struct machine *)ctx)->pm);
}

/* --api-socket: the control socket, served on the I/O thread. */
static bool machine_add_api(struct machine *m, const char *path)
{
	struct vmm_api_ops ops = { .power_button = machine_power_button, .pause = machine_pause,
				   .paused = machine_paused, .ctx = m };
	m->api = vmm_api_create(path, m->io, &ops);
	return m->api != NULL;
}

/*
 * PCI devices: pvpanic, then the devices the options ask for, kind by kind
 * in the table's order (vmm/devices.h), which is the order of their slots.
 */
static bool machine_add_pci_devices(struct machine *m)
{
	const struct vmm_options *o = m->cfg->opts;
	m->io = iothread_create();
	m->virtio = m->io ? virtio_host_create(&m->vm, &m->pci, m->io) : NULL;
	if (!m->virtio)
		return false;
	m->pvpanic = (struct pvpanic){ machine_guest_panic, m };
	if (!pvpanic_attach(&m->pvpanic, &m->pci))
		return false;
	struct vmm_device_env env = { m->virtio, m->io, &m->vm.mem };
	for (unsigned i = 0; i < VMM_NDEVICES; i++) {
		const struct vmm_device_slot *s = &vmm_devices[i];
		unsigned n = vmm_device_count(s, o);
		int code = n ? s->kind->create(&env, vmm_device_values(s, o), n, &m->devices[i]) : 0;
		if (code != 0) {
			machine_stop(m, (enum vmm_exit)code);
			return false;
		}
	}
	return !o->api_socket || machine_add_api(m, o->api_socket);
}

/* What this VM's devices need of the jail and the sandbox. */
static struct vmm_device_needs machine_device_needs(const struct vmm_options *o)
{
	struct vmm_device_needs needs = { 0 };
	for (unsigned i = 0; i < VMM_NDEVICES; i++) {
		const struct vmm_device_slot *s = &vmm_devices[i];
		unsigned n = vmm_device_count(s, o);
		if (n && s->kind->needs)
			s->kind->needs(vmm_device_values(s, o), n, &needs);
	}
	return needs;
}

/* Starts each device kind's host side: the sandbox is in, the I/O thread runs. */
static bool machine_start_devices(struct machine *m)
{
	for (unsigned i = 0; i < VMM_NDEVICES; i++)
		if (m->devices[i] && vmm_devices[i].kind->start &&
		    !vmm_devices[i].kind->start(m->devices[i]))
			return false;
	return true;
}

/* The directory part of path into out ("." when it has none). */
static const char *dir_of(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
	if (n == 0 || n >= len)
		return n == 0 ? "." : NULL;
	memcpy(out, path, n);
	out[n] = '\0';
	return out;
}

/*
 * What the jailed VMM keeps (vmm/jail.h): the directories of its sockets,
 * to unlink them at exit where its user may and, for vsock, to reach the
 * host's PATH_<port> listeners; the host's network and resolv.conf for user-mode networking.
 */
static bool machine_jail(const struct vmm_options *o, const struct vmm_device_needs *dev)
{
	char dirs[3][PATH_MAX];
	const char *paths[3] = {
		o->serial.kind == CONSOLE_SOCKET ? o->serial.path : NULL,
		o->api_socket,
		dev->socket,
	};
	struct jail_needs needs = { .host_network = dev->host_network, .resolv_conf = dev->host_network };
	for (size_t i = 0; i < 3; i++) {
		const char *d = paths[i] ? dir_of(paths[i], dirs[i], sizeof(dirs[i])) : NULL;
		/* The whole directory is kept: "/" would keep the host's root,
		 * and a relative path would not resolve inside the jail. */
		if (paths[i] && (!d || d[0] != '/' || d[1] == '\0')) {
			log_error("--jail: socket %s must be an absolute path in a directory of "
				  "its own (not /)", paths[i]);
			return false;
		}
		for (size_t k = 0; d && k < i; k++)
			if (needs.keep[k] && strcmp(needs.keep[k], d) == 0)
				d = NULL;
		needs.keep[i] = d;
	}
	return jail_enter(&o->jail, &needs);
}

static bool machine_create_vcpus(struct machine *m)
{
	m->slots = calloc(m->ncpus, sizeof(*m->slots));
	if (!m->slots)
		return false;
	for (unsigned i = 0; i < m->ncpus; i++) {
		m->slots[i].m = m;
		if (!vcpu_create(&m->slots[i].vcpu, &m->vm, i, m->ncpus))
			return false;
		m->slots[i].created = true;
	}
	return vcpu_setup_boot(&m->slots[0].vcpu, m->cfg->kernel_info->entry);
}

static bool machine_start_vcpus(struct machine *m)
{
	bool ok = true;
	pthread_mutex_lock(&m->start_lock);
	for (unsigned i = 0; ok && i < m->ncpus; i++) {
		struct vcpu_slot *s = &m->slots[i];
		int rc = pthread_create(&s->thread, NULL, vcpu_thread, s);
		if (rc != 0) {
			log_error("cannot start the thread of vCPU %u: %s", i, strerror(rc));
			ok = false;
		}
		s->started = ok;
	}
	pthread_mutex_unlock(&m->start_lock);
	return ok;
}

static bool machine_setup(struct machine *m)
{
	const struct vmm_options *o = m->cfg->opts;
	if (!kvm_vm_create(&m->vm, o->memory))
		return false;
	m->vm_created = true;
	if (m->ncpus > kvm_vm_max_vcpus(&m->vm)) {
		log_error("--cpus %u: this host's KVM allows at most %u vCPUs", m->ncpus,
			  kvm_vm_max_vcpus(&m->vm));
		machine_stop(m, VMM_EXIT_USAGE);
		return false;
	}
	if (!machine_load_guest(m) || !machine_add_devices(m) || !machine_add_pci_devices(m) ||
	    !machine_create_vcpus(m))
		return false;
	m->console = console_open(&o->serial, m->serial, machine_console_quit, m);
	struct vmm_device_needs needs = machine_device_needs(o);
	/* From here on, only what the jail leaves (vmm/jail.h) and the system
	 * calls of a running VMM (vmm/sandbox.c). */
	return m->console && (!o->jail.enabled || machine_jail(o, &needs)) &&
	       (!o->seccomp || sandbox_enter_with(needs.sandbox)) &&
	       console_start(m->console) && iothread_start(m->io) && machine_start_devices(m) &&
	       machine_start_vcpus(m);
}

/* The stop signals, as a descriptor: created before the sandbox goes in. */
static int machine_open_signalfd(void)
{
	sigset_t set;
	stop_signals(&set);
	return signalfd(-1, &set, SFD_CLOEXEC);
}

/* Waits for a guest event or a stop signal. */
static void machine_wait(struct machine *m)
{
	struct pollfd fds[2] = {
		{ .fd = m->done_fd, .events = POLLIN },
		{ .fd = m->signal_fd, .events = POLLIN },
	};
	while (!atomic_load(&m->stopping)) {
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			break;
		struct signalfd_siginfo si;
		if ((fds[1].revents & POLLIN) && read(m->signal_fd, &si, sizeof(si)) == sizeof(si)) {
			log_info("received %s, stopping the VM", strsignal((int)si.ssi_signo));
			machine_stop(m, atomic_load(&m->panicked) ? VMM_EXIT_PANIC : VMM_EXIT_STOPPED);
		}
	}
}

static void machine_teardown(struct machine *m)
{
	machine_release_images(m);
	machine_stop(m, VMM_EXIT_FAILURE); /* no-op if a reason was recorded */
	for (unsigned i = 0; m->slots && i < m->ncpus; i++)
		if (m->slots[i].started)
			pthread_join(m->slots[i].thread, NULL);
	console_close(m->console);
	/* The I/O thread stops before the devices it calls into go away. */
	iothread_destroy(m->io);
	vmm_api_destroy(m->api);             /* its watches went with the I/O thread */
	for (unsigned i = 0; i < VMM_NDEVICES; i++)
		if (m->devices[i] && vmm_devices[i].kind->detach)
			vmm_devices[i].kind->detach(m->devices[i]);
	virtio_host_destroy(m->virtio);      /* resets every device */
	for (unsigned i = VMM_NDEVICES; i-- > 0;)
		vmm_devices[i].kind->destroy(m->devices[i]);
	if (m->pci_ready)
		pci_bus_destroy(&m->pci);
	for (unsigned i = 0; m->slots && i < m->ncpus; i++)
		if (m->slots[i].created)
			vcpu_destroy(&m->slots[i].vcpu);
	free(m->slots);
	serial_destroy(m->serial);
	rtc_destroy(m->rtc);
	pm_destroy(m->pm);
	if (m->vm_created)
		kvm_vm_destroy(&m->vm);
	if (m->done_fd >= 0)
		close(m->done_fd);
	if (m->signal_fd >= 0)
		close(m->signal_fd);
}

int machine_run(const struct machine_config *cfg)
{
	struct machine *m = calloc(1, sizeof(*m));
	if (!m) {
		log_error("out of memory");
		return VMM_EXIT_FAILURE;
	}
	m->cfg = cfg;
	m->ncpus = cfg->opts->cpus;
	bus_init(&m->pio, "I/O port");
	bus_init(&m->mmio, "MMIO");
	pthread_mutex_init(&m->start_lock, NULL);
	pthread_mutex_init(&m->pause_lock, NULL);
	pthread_cond_init(&m->pause_cv, NULL);
	m->done_fd = eventfd(0, EFD_CLOEXEC);
	m->signal_fd = machine_open_signalfd();
	if (m->done_fd < 0 || m->signal_fd < 0)
		log_error("cannot create the VMM's eventfd or signalfd: %m");
	else if (machine_setup(m))
		machine_wait(m);
	machine_teardown(m);
	int code = atomic_load(&m->exit_code);
	pthread_mutex_destroy(&m->start_lock);
	pthread_mutex_destroy(&m->pause_lock);
	pthread_cond_destroy(&m->pause_cv);
	free(m);
	return code;
}

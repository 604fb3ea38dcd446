/*
 * shoji-vmm: runs one virtual machine in this process. Order of work:
 * parse and validate everything the user gave (exit 2 on any mistake, with
 * nothing created), then build and run the machine (vmm/machine.c).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "hv/boot.h"
#include "vmm/exit.h"
#include "vmm/machine.h"
#include "vmm/options.h"

struct mapped_file {
	uint8_t *data;
	size_t size;
};

static bool map_file(const char *flag, const char *path, struct mapped_file *f)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		log_error("%s %s: %m", flag, path);
		if (fd >= 0)
			close(fd);
		return false;
	}
	f->size = (size_t)st.st_size;
	f->data = NULL;
	if (f->size > 0) {
		void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			log_error("%s %s: cannot map: %m", flag, path);
			close(fd);
			return false;
		}
		f->data = p;
	}
	close(fd);
	return true;
}

static void unmap_file(struct mapped_file *f)
{
	if (f->data)
		munmap(f->data, f->size);
	f->data = NULL;
}

/*
 * Every vsock connection and API client costs a descriptor. Take the hard
 * limit the administrator allows, once and before anything is opened, so
 * the bounds the VMM derives from it (vmm/vsock-host.h) are as large as
 * they may be; the soft limit (often 1024) would cap a guest's vsock
 * connections well below VSOCK_MAX_CONNS.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	unsigned long long soft = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warn("cannot raise the descriptor limit from %llu: %m; vsock connections are bounded by it",
			 soft);
}

/* Validates kernel, initrd and memory together; every failure is a usage error. */
static int prepare_boot(const struct vmm_options *o, struct mapped_file *kernel,
			struct mapped_file *initrd, struct kernel_info *ki, struct boot_plan *plan)
{
	char why[256];
	if (!map_file("--kernel", o->kernel, kernel))
		return VMM_EXIT_USAGE;
	if (!kernel_parse(kernel->data, kernel->size, ki, why, sizeof(why))) {
		log_error("--kernel %s: %s", o->kernel, why);
		return VMM_EXIT_USAGE;
	}
	if (o->initrd && !map_file("--initrd", o->initrd, initrd))
		return VMM_EXIT_USAGE;
	if (!boot_plan_make(ki, o->memory, initrd->size, strlen(o->cmdline), plan, why, sizeof(why))) {
		log_error("%s", why);
		return VMM_EXIT_USAGE;
	}
	return VMM_EXIT_POWEROFF;
}

int main(int argc, char **argv)
{
	log_init("shoji-vmm", LOG_LEVEL_INFO);

	struct vmm_options opts;
	char err[512];
	if (!options_parse(argc, argv, &opts, err, sizeof(err))) {
		log_error("%s", err);
		return VMM_EXIT_USAGE;
	}
	if (opts.help) {
		options_print_usage(stdout);
		return 0;
	}
	if (opts.version) {
		printf("shoji-vmm %s\n", SHOJI_VERSION);
		return 0;
	}
	log_set_level(opts.log_level);
	/* Nothing this process runs may gain privileges (setuid, file caps). */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	raise_fd_limit();

	struct mapped_file kernel = { 0 }, initrd = { 0 };
	struct kernel_info ki;
	struct boot_plan plan;
	int code = prepare_boot(&opts, &kernel, &initrd, &ki, &plan);
	if (code == VMM_EXIT_POWEROFF) {
		machine_block_signals();
		struct machine_config cfg = {
			.opts = &opts,
			.kernel = kernel.data,
			.kernel_size = kernel.size,
			.kernel_info = &ki,
			.initrd = initrd.data,
			.initrd_size = initrd.size,
			.plan = &plan,
		};
		return machine_run(&cfg); /* it unmaps the images */
	}
	unmap_file(&kernel);
	unmap_file(&initrd);
	return code;
}

/*
 * Exit statuses of shoji-vmm: the contract with shojid and scripts. They are
 * documented in docs/shoji-vmm.1 and must not be renumbered.
 */
#ifndef SHOJI_VMM_EXIT_H
#define SHOJI_VMM_EXIT_H

enum vmm_exit {
	VMM_EXIT_POWEROFF = 0, /* the guest powered off (ACPI S5) */
	VMM_EXIT_FAILURE = 1,  /* the VMM could not start or run the VM */
	VMM_EXIT_USAGE = 2,    /* bad command line or input files */
	VMM_EXIT_REBOOT = 3,   /* the guest asked for a reboot */
	VMM_EXIT_CRASH = 4,    /* a vCPU reached a state it cannot leave */
	VMM_EXIT_PANIC = 5,    /* the guest kernel panicked (pvpanic) */
	VMM_EXIT_STOPPED = 6,  /* stopped by SIGTERM, SIGINT, SIGHUP or the console's Ctrl-a x */
};

#endif

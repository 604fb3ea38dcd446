/*
 * `shoji vm start|stop|restart NAME`, waiting for the outcome: the command
 * follows shojid's events until the VM runs (start, restart) or is stopped
 * (stop), and fails with the reason when its start fails (the VMM's last
 * error line, e.g. that /dev/kvm is missing).
 */
#ifndef SHOJI_CLI_WAIT_H
#define SHOJI_CLI_WAIT_H

#include "cli/shoji.h"

/* The exit status: 0 when the VM got there, 1 (message printed) otherwise. */
int cli_vm_action_wait(const struct cli *cli, const char *action, const char *name);

#endif

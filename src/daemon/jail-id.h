/*
 * The user and group each VM's jailed VMM runs as (shoji-vmm --jail, see
 * vmm/jail.h): one of its own per VM, so that a compromised VMM cannot
 * signal, trace or open the files of another VM's. The id is derived from
 * the VM's name, so it is the same across daemon restarts and needs no
 * state; it lies in a range of 2^24 ids from JAIL_ID_BASE that no
 * distribution hands out to users. Two names that map to one id are told
 * apart at start: the second VM is refused (rename it).
 */
#ifndef SHOJI_DAEMON_JAIL_ID_H
#define SHOJI_DAEMON_JAIL_ID_H

#include <stdint.h>

#define JAIL_ID_BASE 0x70000000u
#define JAIL_ID_SPAN 0x01000000u

uint32_t jail_id_of(const char *name);

#endif

/*
 * Process identity for supervision: pidfds (which never refer to a
 * recycled pid) and a pid's start time from /proc, which the daemon records
 * on disk so that a restarted daemon re-adopts a VMM only if the pid still
 * names the same process.
 */
#ifndef SHOJI_DAEMON_PROC_H
#define SHOJI_DAEMON_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* A pidfd for pid (close-on-exec), or -1 with errno. */
int proc_pidfd_open(pid_t pid);
/* Sends sig through a pidfd: it cannot hit a process that reused the pid. */
bool proc_pidfd_signal(int pidfd, int sig);
/* Reaps a child through its pidfd; false if it is not our child or not done. */
bool proc_pidfd_reap(int pidfd);
/*
 * Field 22 of /proc/PID/stat (start time in clock ticks since boot), or 0
 * when the process does not exist. The command name may hold spaces and
 * parentheses, so the fields are counted from the last ')'.
 */
uint64_t proc_start_time(pid_t pid);

#endif

/*
 * The key=value options of `shoji vm create` (--disk, --net, --vsock) to
 * the JSON of a VM definition (docs/api.md). They are split by base/kvopt,
 * as shoji-vmm splits its own, so the two accept the same keys in the same
 * spelling and refuse a mistake with the same words. Values are checked
 * only as far as JSON needs (on/off becomes true/false); the daemon checks
 * the rest and names the key at fault.
 */
#ifndef SHOJI_CLI_SHOJI_CREATE_OPTS_H
#define SHOJI_CLI_SHOJI_CREATE_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/*
 * --disk path=P[,format=raw|qcow2][,readonly=on|off][,direct=on|off]
 *        [,serial=S][,aio=auto|threads|io_uring]
 * into the object `disk`; a relative path is made absolute. backing-dir=,
 * which shoji-vmm also takes, is refused with the reason: shojid alone
 * says where backing files may lie (its --image-dir).
 */
bool cli_disk_parse(const char *text, json_t *disk, char *err, size_t errlen);

/* --net user[,hostfwd=RULE]...[,mac=M] or tap=NAME[,mac=M] into `net`. */
bool cli_net_parse(const char *text, json_t *net, char *err, size_t errlen);

/* --vsock cid=N into `vsock`. */
bool cli_vsock_parse(const char *text, json_t *vsock, char *err, size_t errlen);

/*
 * A path as a JSON string, made absolute when the file exists: the
 * daemon's working directory is not the user's. A missing file is left as
 * given, for the daemon to name.
 */
json_t *cli_abs_path(const char *p);

#endif

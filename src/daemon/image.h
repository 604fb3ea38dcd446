/*
 * VMs made from a master image (a `shoji-img build` bundle, docs/images.md):
 * the VM writes to an overlay of its own, STATE/disks/NAME.qcow2, whose
 * backing file is the bundle's OUT.qcow2; the master is never written. The
 * daemon creates the overlay at the VM's first start and removes it with
 * the VM.
 */
#ifndef SHOJI_DAEMON_IMAGE_H
#define SHOJI_DAEMON_IMAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/vmdef.h"

/* STATE/disks/NAME.qcow2; false if it does not fit. */
bool image_overlay_path(const char *state_dir, const char *name, char *out, size_t len);

/*
 * What the VMM gets for d: d itself, or, for an image VM, d with its
 * overlay (created now if missing) as the first disk, the master's folder
 * as where its backing file may lie. False with a one-line reason.
 */
bool image_effective_def(const char *state_dir, const struct vmdef *d, struct vmdef *out, char *why,
			 size_t whylen);

/* Removes an image VM's overlay (when the VM is removed); quiet if there is none. */
void image_remove_overlay(const char *state_dir, const char *name);

#endif

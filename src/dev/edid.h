/*
 * EDID for the virtual monitors of display devices (see edid.c).
 */
#ifndef SHOJI_DEV_EDID_H
#define SHOJI_DEV_EDID_H

#include <stdint.h>

#define EDID_BLOCK   128
/* A detailed timing holds 12 bits per dimension. */
#define EDID_MAX_DIM 4095u

/* Fills `edid` with a checksummed base block whose preferred mode is
 * width x height (each clamped to EDID_MAX_DIM). */
void edid_make(uint8_t edid[EDID_BLOCK], uint32_t width, uint32_t height);

#endif

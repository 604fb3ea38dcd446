/*
 * An EDID 1.4 base block (VESA E-EDID, 128 bytes) that describes a monitor
 * whose preferred and only detailed mode is the size the host offers: what
 * virtio-gpu answers to GET_EDID, so a guest's DRM driver picks that mode.
 * The detailed timing uses reduced blanking at 60 Hz; a size whose 60 Hz
 * pixel clock exceeds the field's 655.35 MHz gets the largest clock, i.e.
 * a lower refresh rate, which a virtual monitor does not care about; a
 * tiny one gets 10 MHz, the least decoders believe. edid-decode's
 * conformity check passes for the sizes tests/unit/edid_decode.py lists.
 */
#include "dev/edid.h"

#include <string.h>

/* An 18-byte detailed timing for w x h, reduced blanking, refresh as close to
 * 60 Hz as the 16-bit pixel clock (10 kHz units) allows. */
static void edid_timing(uint8_t *d, uint32_t w, uint32_t h)
{
	const uint32_t hblank = 160, hfp = 48, hsync = 32;
	const uint32_t vblank = 35, vfp = 3, vsync = 6;
	uint64_t total = (uint64_t)(w + hblank) * (h + vblank);
	uint64_t clock = total * 60 / 10000;
	if (clock > 65535)
		clock = 65535;
	if (clock < 1000)
		clock = 1000; /* decoders take less than 10 MHz for garbage */
	uint32_t hmm = w * 254 / 960, vmm = h * 254 / 960; /* 96 dpi */
	d[0] = clock & 0xff;
	d[1] = (uint8_t)(clock >> 8);
	d[2] = w & 0xff;
	d[3] = hblank & 0xff;
	d[4] = (uint8_t)(((w >> 8) & 0xf) << 4 | ((hblank >> 8) & 0xf));
	d[5] = h & 0xff;
	d[6] = vblank & 0xff;
	d[7] = (uint8_t)(((h >> 8) & 0xf) << 4 | ((vblank >> 8) & 0xf));
	d[8] = hfp & 0xff;
	d[9] = hsync & 0xff;
	d[10] = (uint8_t)((vfp & 0xf) << 4 | (vsync & 0xf));
	d[11] = (uint8_t)(((hfp >> 8) & 3) << 6 | ((hsync >> 8) & 3) << 4 | ((vfp >> 4) & 3) << 2 |
			  ((vsync >> 4) & 3));
	d[12] = hmm & 0xff;
	d[13] = vmm & 0xff;
	d[14] = (uint8_t)(((hmm >> 8) & 0xf) << 4 | ((vmm >> 8) & 0xf));
	d[15] = d[16] = 0;
	d[17] = 0x1e; /* digital separate sync, both polarities positive */
}

void edid_make(uint8_t e[EDID_BLOCK], uint32_t w, uint32_t h)
{
	static const uint8_t header[8] = { 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00 };
	static const uint8_t chroma[10] = { 0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54 };
	if (w > EDID_MAX_DIM)
		w = EDID_MAX_DIM;
	if (h > EDID_MAX_DIM)
		h = EDID_MAX_DIM;
	memset(e, 0, EDID_BLOCK);
	memcpy(e, header, sizeof(header));
	/* Manufacturer "SHJ": three 5-bit letters, big-endian. */
	uint16_t mfg = (uint16_t)(('S' - '@') << 10 | ('H' - '@') << 5 | ('J' - '@'));
	e[8] = (uint8_t)(mfg >> 8);
	e[9] = mfg & 0xff;
	e[10] = 0x01; /* product code */
	e[16] = 1;    /* week of manufacture */
	e[17] = 2026 - 1990;
	e[18] = 1;    /* EDID 1.4 */
	e[19] = 4;
	e[20] = 0xa5; /* digital, 8 bits per colour, DisplayPort */
	e[21] = (uint8_t)((w * 254 / 960 + 5) / 10); /* size in cm */
	e[22] = (uint8_t)((h * 254 / 960 + 5) / 10);
	e[23] = 120;  /* gamma 2.2 */
	e[24] = 0x06; /* RGB 4:4:4, sRGB, preferred timing is native */
	memcpy(e + 25, chroma, sizeof(chroma));
	for (unsigned i = 38; i < 54; i++)
		e[i] = 0x01; /* no standard timings */
	edid_timing(e + 54, w, h);
	/* Display product name. */
	/* 13 bytes: the name, a newline, spaces (no NUL). */
	static const char name[] = "shoji\n       ";
	_Static_assert(sizeof(name) == 14, "13 bytes of name field");
	e[72 + 3] = 0xfc;
	memcpy(e + 72 + 5, name, 13);
	/* Two dummy descriptors. */
	e[90 + 3] = 0x10;
	e[108 + 3] = 0x10;
	uint8_t sum = 0;
	for (unsigned i = 0; i < EDID_BLOCK - 1; i++)
		sum = (uint8_t)(sum + e[i]);
	e[EDID_BLOCK - 1] = (uint8_t)(0x100 - sum);
}

/*
 * edid-dump: writes the EDID block dev/edid.c makes for WIDTH x HEIGHT to
 * standard output, so that an independent decoder (edid-decode, see
 * edid_decode.py) can check it.
 *
 * Usage: edid-dump WIDTH HEIGHT
 */
#include <stdio.h>
#include <stdlib.h>

#include "dev/edid.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: edid-dump WIDTH HEIGHT\n");
		return 2;
	}
	uint8_t e[EDID_BLOCK];
	edid_make(e, (uint32_t)strtoul(argv[1], NULL, 0), (uint32_t)strtoul(argv[2], NULL, 0));
	return fwrite(e, 1, sizeof(e), stdout) == sizeof(e) ? 0 : 1;
}

/* Reboots through the FADT reset register (port 0xCF9, value 6). */
#include "guest.h"
	.globl _start
_start:
	PUTS msg
	mov $0xcf9, %dx
	mov $0x06, %al
	out %al, %dx
	HANG
msg:	.asciz "rebooting through the reset register\n"

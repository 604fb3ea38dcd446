/*
 * Console input path: echoes every byte received on COM1 back to COM1 until
 * it receives 'q', then powers off.
 */
#include "guest.h"
	.globl _start
_start:
	PUTS ready
10:	mov $COM1_LSR, %dx
11:	in %dx, %al
	test $0x01, %al          /* LSR.DR: a byte is waiting */
	jz 11b
	mov $COM1, %dx
	in %dx, %al
	mov %al, %bl
	PUTC_BL
	cmp $'q', %bl
	jne 10b
	POWEROFF
	HANG
ready:	.asciz "echo ready\n"

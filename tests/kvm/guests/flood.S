/*
 * Console back-pressure: writes 128 KiB (twice the console queue) as lines
 * of 63 letters cycling a..z plus '\n', polling LSR.THRE before each byte
 * as a driver does, then powers off.
 */
#include "guest.h"
	.globl _start
_start:
	xor %r12d, %r12d          /* bytes written */
	xor %r13d, %r13d          /* position in the line */
	mov $'a', %r14b           /* next letter */
10:	cmp $131072, %r12d
	je 19f
	cmp $63, %r13d
	jne 12f
	mov $'\n', %bl
	xor %r13d, %r13d
	jmp 13f
12:	mov %r14b, %bl
	inc %r13d
	inc %r14b
	cmp $'z'+1, %r14b
	jne 13f
	mov $'a', %r14b
13:	PUTC_BL
	inc %r12d
	jmp 10b
19:	POWEROFF
	HANG

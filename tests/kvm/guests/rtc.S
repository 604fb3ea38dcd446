/*
 * Reads the century and year from the CMOS RTC (BCD, as PC firmware
 * leaves it) and prints "year=CCYY\n", then powers off.
 */
#include "guest.h"
	.globl _start
_start:
	mov $0x32, %al          /* century */
	out %al, $0x70
	in $0x71, %al
	mov %al, %r9b
	mov $0x09, %al          /* year */
	out %al, $0x70
	in $0x71, %al
	mov %al, %r10b
	PUTS pre
	mov %r9b, %al
	call put_bcd
	mov %r10b, %al
	call put_bcd
	mov $'\n', %bl
	PUTC_BL
	POWEROFF
	HANG

/* Prints the two BCD digits in %al. */
put_bcd:
	mov %al, %r11b
	mov %al, %bl
	shr $4, %bl
	add $'0', %bl
	PUTC_BL
	mov %r11b, %bl
	and $0x0f, %bl
	add $'0', %bl
	PUTC_BL
	ret
pre:	.asciz "year="

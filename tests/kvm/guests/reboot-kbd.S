/* Reboots through the i8042 controller: command 0xFE on port 0x64. */
#include "guest.h"
	.globl _start
_start:
	PUTS msg
	mov $0x64, %dx
1:	in %dx, %al          /* wait for an empty input buffer, as Linux does */
	test $0x02, %al
	jnz 1b
	mov $0xfe, %al
	out %al, %dx
	HANG
msg:	.asciz "rebooting through the i8042\n"

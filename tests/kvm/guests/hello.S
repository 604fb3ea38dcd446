/* Writes a line to COM1 and powers off through ACPI PM1a_CNT (S5). */
#include "guest.h"
	.globl _start
_start:
	PUTS msg
	POWEROFF
	HANG
msg:	.asciz "hello from a shoji smoke guest\n"

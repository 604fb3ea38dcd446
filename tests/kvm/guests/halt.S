/* Writes a line and halts with interrupts off: only a signal stops the VM. */
#include "guest.h"
	.globl _start
_start:
	PUTS msg
	HANG
msg:	.asciz "halting now\n"

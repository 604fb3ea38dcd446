/* Reboots by triple fault with an empty IDT, as Linux's reboot=triple does. */
#include "guest.h"
	.globl _start
_start:
	PUTS msg
	lidt empty_idt(%rip)
	ud2  /* int3 as Linux does would do too; PVM hosts cannot emulate it */
	HANG
empty_idt:
	.word 0
	.quad 0
msg:	.asciz "rebooting by triple fault\n"

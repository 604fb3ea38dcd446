/*
 * Crashes: an IDT of not-present gates, so ud2 raises #NP, then #DF, then
 * a triple fault that is not the reset idiom (the IDT is not empty).
 */
#include "guest.h"
	.globl _start
_start:
	PUTS msg
	lidt bad_idt(%rip)
	ud2  /* int3 as Linux does would do too; PVM hosts cannot emulate it */
	HANG
bad_idt:
	.word 0xfff
	.quad 0x200000          /* zeroed RAM: every gate not present */
msg:	.asciz "crashing by triple fault\n"

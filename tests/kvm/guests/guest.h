/*
 * Helpers for the smoke-test guests. They run in 64-bit mode on shoji's
 * boot page tables and GDT, with RSI pointing at boot_params. Each guest is
 * a few hundred instructions: the host here emulates them slowly.
 */
#define COM1      0x3f8
#define COM1_LSR  0x3fd
#define PM1A_CNT  0x604
#define SLP_S5_EN 0x3400   /* SLP_TYP=5 << 10 | SLP_EN */

	.code64
	.text

/* putc: writes %bl to COM1 once the transmitter has room. Clobbers al, dx. */
.macro PUTC_BL
	mov $COM1_LSR, %dx
1:	in %dx, %al
	test $0x20, %al
	jz 1b
	mov $COM1, %dx
	mov %bl, %al
	out %al, %dx
.endm

/* puts: writes the NUL-terminated string at %rsi... (uses rdi) */
.macro PUTS label
	lea \label(%rip), %rdi
2:	movb (%rdi), %bl
	test %bl, %bl
	jz 3f
	PUTC_BL
	inc %rdi
	jmp 2b
3:
.endm

.macro POWEROFF
	mov $PM1A_CNT, %dx
	mov $SLP_S5_EN, %ax
	out %ax, %dx
.endm

/* Stops forever: interrupts are off, so only the host can end this. */
.macro HANG
4:	cli
	hlt
	jmp 4b
.endm

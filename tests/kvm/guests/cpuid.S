/*
 * Reports what CPUID says to the guest: the hypervisor signature of leaf
 * 0x40000000, the hypervisor bit and the initial APIC id of leaf 1, as
 * "sig=KVMKVMKVM hv=1 apic=0\n", then powers off.
 */
#include "guest.h"
	.globl _start
_start:
	mov $0x40000000, %eax
	xor %ecx, %ecx
	cpuid
	mov %ebx, sig(%rip)
	mov %ecx, sig+4(%rip)
	mov %edx, sig+8(%rip)
	PUTS pre_sig
	PUTS sig
	mov $1, %eax
	xor %ecx, %ecx
	cpuid
	mov %ebx, %r8d
	shr $31, %ecx           /* hypervisor bit */
	add $'0', %cl
	mov %cl, hv(%rip)
	shr $24, %r8d           /* initial APIC id (one digit suffices here) */
	add $'0', %r8b
	mov %r8b, apic(%rip)
	PUTS rest
	POWEROFF
	HANG
pre_sig: .asciz "sig="
sig:	.asciz "????????????"
rest:	.ascii " hv="
hv:	.ascii "?"
	.ascii " apic="
apic:	.ascii "?"
	.asciz "\n"

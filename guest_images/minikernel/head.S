/*
 * head.S - kernel entry point.
 *
 * The machine enters _start in 64-bit long mode with a GDT loaded
 * (CS=0x08, SS=DS=ES=0x10), IF=0, rsp pointing into a machine-owned
 * stack and GS_BASE = &cpu_pda[0].  We immediately move to the boot
 * (idle task) stack in .bss, clear .bss, and call start_kernel().
 */
#include "asm-offsets.h"

	.section .text.head, "ax"
	.code64
	.globl _start
	.type _start, @function
_start:
	cli
	cld
	/* clear .bss (the machine zero-fills it too; this makes it explicit) */
	movq	$__bss_start, %rdi
	movq	$__bss_stop, %rcx
	subq	%rdi, %rcx
	shrq	$3, %rcx
	xorl	%eax, %eax
	rep stosq
	/* switch to init_task's stack (swapper, pid 0) */
	movq	$(init_thread_union + THREAD_SIZE), %rsp
	xorl	%ebp, %ebp
	pushq	$0			/* fake return address ends backtraces */
	pushq	$0
	movq	%rsp, %rbp
	call	start_kernel
1:	cli
	hlt
	jmp	1b
	.size _start, . - _start

#ifdef CONFIG_SMP
/*
 * An AP starts here (smp.c's do_boot_cpu): the machine set rsp to the
 * top of its idle task's stack, GS_BASE to its cpu_pda, IF=0.
 */
	.globl secondary_startup_64
	.type secondary_startup_64, @function
secondary_startup_64:
	cli
	cld
	xorl	%ebp, %ebp
	pushq	$0			/* fake return address ends backtraces */
	pushq	$0
	movq	%rsp, %rbp
	call	start_secondary
2:	cli
	hlt
	jmp	2b
	.size secondary_startup_64, . - secondary_startup_64
#endif

	.section .note.GNU-stack, "", @progbits

/*
 * entry.S - interrupt entry, context switch and thread start-up code
 * (arch/x86_64/kernel/entry.S shaped).
 */
#include "asm-offsets.h"

	.code64
	.text

/* Save all general purpose registers as a struct pt_regs (orig_rax must
 * already be pushed on top of the hardware frame). */
.macro SAVE_ALL
	pushq	%rdi
	pushq	%rsi
	pushq	%rdx
	pushq	%rcx
	pushq	%rax
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%rbx
	pushq	%rbp
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
.endm

.macro RESTORE_ALL
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbp
	popq	%rbx
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rax
	popq	%rcx
	popq	%rdx
	popq	%rsi
	popq	%rdi
.endm

/*
 * Timer interrupt, vector 0x20.  The machine aligned rsp down to 16 and
 * pushed SS, RSP, RFLAGS, CS, RIP, then cleared IF.  This builds a
 * struct pt_regs, calls do_timer_interrupt(regs), and on the way out
 * preempts the interrupted code when it is preemptible
 * (preempt_count == 0, interrupts were on) and TIF_NEED_RESCHED is set.
 */
	.globl timer_interrupt
	.type timer_interrupt, @function
	.p2align 4
timer_interrupt:
	pushq	$~TIMER_VECTOR		/* orig_rax = ~vector, as Linux does */
	SAVE_ALL
	cld
	incl	%gs:PDA_irqcount
	movq	%rsp, %rdi		/* struct pt_regs * */
	subq	$8, %rsp		/* 16-byte alignment for the call */
	call	do_timer_interrupt
	addq	$8, %rsp
	decl	%gs:PDA_irqcount
	.globl ret_from_intr
ret_from_intr:
retint_kernel:
	/* preempt only if preempt_count == 0 and the interrupted context
	 * had interrupts enabled */
	movq	%gs:PDA_kernelstack, %rcx
	subq	$THREAD_SIZE, %rcx		/* thread_info */
	cmpl	$0, TI_preempt_count(%rcx)
	jnz	retint_restore_args
	btq	$TIF_NEED_RESCHED, TI_flags(%rcx)
	jnc	retint_restore_args
	btq	$9, EFLAGS(%rsp)		/* IF in the interrupted frame */
	jnc	retint_restore_args
	subq	$8, %rsp
	call	preempt_schedule_irq		/* returns with IF=0 */
	addq	$8, %rsp
	jmp	retint_kernel
retint_restore_args:
	RESTORE_ALL
	addq	$8, %rsp			/* orig_rax */
	iretq
	.size timer_interrupt, . - timer_interrupt

/*
 * struct task_struct *switch_to(struct task_struct *prev,
 *                               struct task_struct *next)
 *
 * Save the callee-saved registers on prev's stack, store rsp in
 * prev->thread.rsp, load next->thread.rsp, make next current in the PDA
 * (%gs:0 and the kernel stack top), restore next's registers and return
 * on next's stack.  Returns prev (the task we switched away from) in
 * rax, as seen from next.
 */
	.globl switch_to
	.type switch_to, @function
	.p2align 4
switch_to:
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, TASK_thread_rsp(%rdi)
	movq	TASK_thread_rsp(%rsi), %rsp
	movq	%rsi, %gs:PDA_pcurrent
	movq	TASK_stack(%rsi), %rax
	addq	$THREAD_SIZE, %rax
	movq	%rax, %gs:PDA_kernelstack
	movq	%rdi, %rax
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.size switch_to, . - switch_to

/*
 * A new task's first switch_to() "returns" here, on a stack prepared by
 * copy_thread(): a copy of the parent's struct pt_regs sits on top.
 * schedule_tail() drops the runqueue lock and enables interrupts; the
 * pt_regs are then loaded and iretq enters regs->rip (child_rip for
 * kernel threads) with IF set from regs->eflags.
 */
	.globl ret_from_fork
	.type ret_from_fork, @function
	.p2align 4
ret_from_fork:
	movq	%rax, %rdi		/* prev */
	subq	$8, %rsp
	call	schedule_tail
	addq	$8, %rsp
	RESTORE_ALL
	addq	$8, %rsp		/* orig_rax */
	iretq
	.size ret_from_fork, . - ret_from_fork

/*
 * Kernel threads start here (regs->rip) with rdi = fn, rsi = arg:
 * call fn(arg), then do_exit() with its return value.
 */
	.globl child_rip
	.type child_rip, @function
	.p2align 4
child_rip:
	xorl	%ebp, %ebp
	movq	%rdi, %rax
	movq	%rsi, %rdi
	call	*%rax
	movq	%rax, %rdi
	call	do_exit
	ud2
	.size child_rip, . - child_rip

/*
 * void ret_from_execve(struct pt_regs *regs): after a successful
 * do_execve() the task leaves its old frames behind and enters the new
 * program image described by regs (set by start_thread()).
 */
	.globl ret_from_execve
	.type ret_from_execve, @function
	.p2align 4
ret_from_execve:
	cli
	movq	%rdi, %rsp
	RESTORE_ALL
	addq	$8, %rsp
	iretq
	.size ret_from_execve, . - ret_from_execve

/*
 * A program entered by exec returns here: do_exit(return value).
 */
	.globl ret_from_program
	.type ret_from_program, @function
	.p2align 4
ret_from_program:
	xorl	%ebp, %ebp
	movq	%rax, %rdi
	call	do_exit
	ud2
	.size ret_from_program, . - ret_from_program

	.section .note.GNU-stack, "", @progbits

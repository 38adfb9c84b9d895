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
#ifdef CONFIG_USERSPACE
	/* back to user mode: deliver pending signals first (retint_signal) */
	testb	$3, CS(%rsp)
	jz	1f
	movq	%gs:PDA_kernelstack, %rcx
	subq	$THREAD_SIZE, %rcx
	btq	$TIF_SIGPENDING, TI_flags(%rcx)
	jnc	1f
	sti
	movq	%rsp, %rdi
	subq	$8, %rsp
	call	do_notify_resume
	addq	$8, %rsp
	cli
	jmp	retint_kernel
1:
#endif
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
#ifdef CONFIG_USERSPACE
	/* __switch_to(prev, next): address space, FS base, FPU state, rsp0 */
	pushq	%rdi
	pushq	%rsi
	call	__switch_to
	popq	%rsi
	popq	%rdi
#endif
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
#ifdef CONFIG_USERSPACE
	testb	$3, CS(%rsp)		/* a forked process: the system call's way out */
	jnz	ret_from_sys_call
#endif
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

#ifdef CONFIG_USERSPACE
/*
 * system_call: a user `syscall` enters here at CPL 0.  unicorn's syscall
 * does not switch privilege, so the machine completes it as the CPU
 * would (rcx = next rip, r11 = rflags, rflags &= ~FMASK) and sends the
 * CPU through the gate page's far call to the 64-bit call gate
 * __SYSCALL_GATE: the CPU loads rsp from TSS.rsp0 and pushes SS, RSP,
 * CS, RIP(gate page).  That frame becomes the top of a struct pt_regs:
 * ss and rsp stay, eflags and cs go over the gate's CS and RIP, and the
 * user rip (rcx) is pushed below.  Return to user with sysretq.
 */
	.globl system_call
	.type system_call, @function
	.p2align 4
system_call:
	movq	%r11, 8(%rsp)			/* eflags over the gate's CS */
	movq	$__USER_CS, (%rsp)		/* cs over the gate's RIP */
	pushq	%rcx				/* rip */
	pushq	%rax				/* orig_rax */
	SAVE_ALL
	cld
	sti
	movq	$-ENOSYS, %rcx
	movq	%rcx, RAX(%rsp)
	cmpq	$NR_syscalls, %rax
	jae	1f
	movq	%r10, %rcx			/* 4th argument: C convention */
	subq	$8, %rsp			/* 16-byte alignment for the call */
	call	*sys_call_table(,%rax,8)
	addq	$8, %rsp
	movq	%rax, RAX(%rsp)
	jmp	ret_from_sys_call
1:	movq	%rsp, %rdi
	subq	$8, %rsp
	call	sys_ni_syscall_regs
	addq	$8, %rsp
	movq	%rax, RAX(%rsp)
	.globl ret_from_sys_call
ret_from_sys_call:
	cli
	movq	%gs:PDA_kernelstack, %rcx
	subq	$THREAD_SIZE, %rcx
	btq	$TIF_NEED_RESCHED, TI_flags(%rcx)
	jnc	2f
	sti
	subq	$8, %rsp
	call	schedule
	addq	$8, %rsp
	jmp	ret_from_sys_call
2:	btq	$TIF_SIGPENDING, TI_flags(%rcx)
	jnc	3f
	sti
	movq	%rsp, %rdi
	subq	$8, %rsp
	call	do_notify_resume		/* sets TIF_IRET */
	addq	$8, %rsp
	jmp	ret_from_sys_call
3:	lock btrq $TIF_IRET, TI_flags(%rcx)
	jnc	4f
	RESTORE_ALL				/* every register, rcx and r11 too */
	addq	$8, %rsp
	iretq
4:	RESTORE_ALL
	addq	$8, %rsp			/* orig_rax */
	movq	(%rsp), %rcx			/* rip */
	movq	16(%rsp), %r11			/* eflags */
	movq	24(%rsp), %rsp			/* user rsp */
	sysretq
	.size system_call, . - system_call

/*
 * user_trap_gate: an interrupt or fault taken at CPL 3.  unicorn does
 * not deliver through the IDT, so the machine parks the interrupted rip,
 * rflags, vector and error code in user_trap_info[cpu], clears IF and
 * sends the CPU through the gate page's far call to __TRAP_GATE.  This
 * rebuilds the hardware interrupt frame (rip, cs, eflags over the gate's
 * frame, which holds the user rsp and ss) and goes on to the handler.
 */
	.globl user_trap_gate
	.type user_trap_gate, @function
	.p2align 4
user_trap_gate:
	subq	$8, %rsp			/* rip slot */
	pushq	%rax
	pushq	%rbx
	movq	%gs:PDA_cpunumber, %rax
	shlq	$6, %rax
	movq	user_trap_info(%rax), %rbx
	movq	%rbx, 16(%rsp)			/* rip */
	movq	$__USER_CS, 24(%rsp)		/* cs */
	movq	user_trap_info+8(%rax), %rbx
	movq	%rbx, 32(%rsp)			/* eflags */
	cmpq	$TIMER_VECTOR, user_trap_info+16(%rax)
	popq	%rbx
	popq	%rax
	je	timer_interrupt
	pushq	$-1				/* orig_rax */
	SAVE_ALL
	cld
	movq	%rsp, %rdi
	subq	$8, %rsp
	call	do_user_trap			/* kills the task */
	addq	$8, %rsp
	jmp	ret_from_intr
	.size user_trap_gate, . - user_trap_gate

/*
 * The gate page: mapped user-executable in every address space.  The
 * machine enters it at syscall_gate or trap_gate; each far-calls its
 * call gate (`rex.W lcall *m16:64`: the offset is ignored for a gate).
 */
	.section .text.gate, "ax"
	.p2align 12
	.globl __gate_page
__gate_page:
	.globl syscall_gate
syscall_gate:
	rex.W lcall *syscall_gate_ptr(%rip)
	ud2
	.globl trap_gate
trap_gate:
	rex.W lcall *trap_gate_ptr(%rip)
	ud2
syscall_gate_ptr:
	.quad	0
	.word	__SYSCALL_GATE
trap_gate_ptr:
	.quad	0
	.word	__TRAP_GATE
	.p2align 12
	.text
#endif

	.section .note.GNU-stack, "", @progbits

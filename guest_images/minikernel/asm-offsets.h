/*
 * asm-offsets.h - structure offsets shared by the C and assembly code.
 * Every value is checked against the C layout with _Static_assert in
 * sched.c, so the two cannot drift apart silently.
 */
#ifndef _MK_ASM_OFFSETS_H
#define _MK_ASM_OFFSETS_H

#define THREAD_SIZE		8192
#define NR_CPUS			4

/* struct x8664_pda (addressed through %gs) */
#define PDA_pcurrent		0
#define PDA_cpunumber		8
#define PDA_kernelstack		16
#define PDA_irqcount		24
#define PDA_SIZE		32

/* struct thread_info (at the base of each 8 KiB task stack) */
#define TI_task			0
#define TI_flags		8
#define TI_cpu			16
#define TI_preempt_count	20

#define TIF_NEED_RESCHED	3
#define PREEMPT_ACTIVE		0x10000000

/* struct task_struct */
#define TASK_state		0
#define TASK_stack		8
#define TASK_thread_rsp		32

/* struct pt_regs (Linux 2.6 x86_64 order) */
#define R15		0
#define R14		8
#define R13		16
#define R12		24
#define RBP		32
#define RBX		40
#define R11		48
#define R10		56
#define R9		64
#define R8		72
#define RAX		80
#define RCX		88
#define RDX		96
#define RSI		104
#define RDI		112
#define ORIG_RAX	120
#define RIP		128
#define CS		136
#define EFLAGS		144
#define RSP		152
#define SS		160
#define PT_REGS_SIZE	168

#define __KERNEL_CS	0x08
#define __KERNEL_DS	0x10

#define TIMER_VECTOR	0x20

#ifdef CONFIG_USERSPACE
#define __USER_DS	0x1b
#define __USER_CS	0x23
#define __SYSCALL_GATE	0x3b
#define __TRAP_GATE	0x4b
#define NR_syscalls	440
#define ENOSYS		38
#define TIF_SIGPENDING	2		/* a signal to deliver on the way to user mode */
#define TIF_IRET	5		/* return to user mode with iretq (all registers) */
#endif

#endif

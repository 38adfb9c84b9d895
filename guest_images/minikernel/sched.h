/*
 * sched.h - tasks, the per-cpu data area, pt_regs, wait queues, timers
 * and the scheduler interface (linux/sched.h + asm-x86_64 bits).
 */
#ifndef _MK_SCHED_H
#define _MK_SCHED_H

#include "kernel.h"
#include "asm-offsets.h"
#ifdef CONFIG_USERSPACE
#include "signal.h"
#endif

/* ------------------------------------------------------------------ */
/* Registers saved on interrupt entry / used to describe a new thread */

struct pt_regs {
	unsigned long r15, r14, r13, r12, rbp, rbx;
	unsigned long r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi;
	unsigned long orig_rax;
	unsigned long rip, cs, eflags, rsp, ss;
};

/* ------------------------------------------------------------------ */
/* Per-cpu data area, addressed through %gs (GS_BASE = &cpu_pda[cpu]) */

struct task_struct;

struct x8664_pda {
	struct task_struct *pcurrent;	/* %gs:0  current task */
	unsigned long cpunumber;	/* %gs:8  logical cpu number */
	unsigned long kernelstack;	/* %gs:16 top of current task's stack */
	int irqcount;			/* %gs:24 -1 when not in an interrupt */
	int preempt_count_unused;	/* %gs:28 (preempt_count is in thread_info) */
};

extern struct x8664_pda cpu_pda[NR_CPUS];

static inline struct task_struct *get_current(void)
{
	struct task_struct *t;
	__asm__ __volatile__("movq %%gs:0,%0" : "=r"(t));
	return t;
}
#define current get_current()

static inline int smp_processor_id(void)
{
	unsigned long cpu;
	__asm__ __volatile__("movq %%gs:8,%0" : "=r"(cpu));
	return (int)cpu;
}

static inline int in_interrupt(void)
{
	int c;
	__asm__ __volatile__("movl %%gs:24,%0" : "=r"(c));
	return c >= 0;
}

/* ------------------------------------------------------------------ */
/* thread_info lives at the base of every 8 KiB, 8 KiB-aligned stack */

struct thread_info {
	struct task_struct *task;	/* main task structure */
	unsigned long flags;		/* TIF_* */
	u32 cpu;
	int preempt_count;		/* 0 => preemptable */
};

union thread_union {
	struct thread_info thread_info;
	unsigned long stack[THREAD_SIZE / sizeof(long)];
};

static inline struct thread_info *current_thread_info(void)
{
	unsigned long ks;
	__asm__ __volatile__("movq %%gs:16,%0" : "=r"(ks));
	return (struct thread_info *)(ks - THREAD_SIZE);
}

#define preempt_count()	(current_thread_info()->preempt_count)

static inline int test_thread_flag(int flag)
{
	return (current_thread_info()->flags >> flag) & 1;
}

#define need_resched()	unlikely(test_thread_flag(TIF_NEED_RESCHED))

void preempt_schedule(void);

#define preempt_disable() \
	do { current_thread_info()->preempt_count++; barrier(); } while (0)
#define preempt_enable_no_resched() \
	do { barrier(); current_thread_info()->preempt_count--; } while (0)
#define preempt_check_resched() \
	do { if (need_resched()) preempt_schedule(); } while (0)
#define preempt_enable() \
	do { preempt_enable_no_resched(); barrier(); preempt_check_resched(); } while (0)

/* ------------------------------------------------------------------ */
/* Wait queues and timers */

typedef struct __wait_queue {
	struct task_struct *task;
	struct list_head task_list;
} wait_queue_t;

typedef struct {
	spinlock_t lock;
	struct list_head task_list;
} wait_queue_head_t;

#define __WAIT_QUEUE_HEAD_INITIALIZER(name) \
	{ SPIN_LOCK_UNLOCKED, LIST_HEAD_INIT((name).task_list) }
#define DECLARE_WAIT_QUEUE_HEAD(name) \
	wait_queue_head_t name = __WAIT_QUEUE_HEAD_INITIALIZER(name)
#define DECLARE_WAITQUEUE(name, tsk) \
	wait_queue_t name = { tsk, { NULL, NULL } }

void init_waitqueue_head(wait_queue_head_t *q);
void add_wait_queue(wait_queue_head_t *q, wait_queue_t *wait);
void remove_wait_queue(wait_queue_head_t *q, wait_queue_t *wait);
void __wake_up(wait_queue_head_t *q, unsigned int mode, int nr_exclusive);
#define wake_up(q)		__wake_up(q, TASK_UNINTERRUPTIBLE | TASK_INTERRUPTIBLE, 1)
#define wake_up_interruptible(q) __wake_up(q, TASK_INTERRUPTIBLE, 1)
#define wake_up_all(q)		__wake_up(q, TASK_UNINTERRUPTIBLE | TASK_INTERRUPTIBLE, 0)

struct timer_list {
	struct list_head entry;
	unsigned long expires;
	void (*function)(unsigned long);
	unsigned long data;
};

extern volatile unsigned long jiffies;
void init_timer(struct timer_list *timer);
void add_timer(struct timer_list *timer);
int del_timer(struct timer_list *timer);
void run_local_timers(void);

/* ------------------------------------------------------------------ */
/* Files and address spaces owned by a task */

#define NR_OPEN_DEFAULT	16

struct file;

struct files_struct {
	int next_fd;
	struct file *fd_array[NR_OPEN_DEFAULT];
#ifdef CONFIG_USERSPACE
	unsigned long close_on_exec;	/* one bit per fd */
#endif
};

struct mm_struct {
	int users;
	unsigned long start_code, end_code, entry;
	unsigned long arg_start, arg_end;
	char arg_page[256];		/* argv strings of the last exec */
	char *argv[8];
#ifdef CONFIG_USERSPACE
	unsigned long *pgd;		/* the page tables (CR3); NULL: kernel image only */
	unsigned long start_brk, brk, mmap_base;
	unsigned long start_stack, nr_pages;
	char exe[48];			/* readlink("/proc/self/exe") */
#endif
};

/* ------------------------------------------------------------------ */
/* The task structure */

#define TASK_RUNNING		0
#define TASK_INTERRUPTIBLE	1
#define TASK_UNINTERRUPTIBLE	2
#define TASK_STOPPED		4
#define EXIT_ZOMBIE		16
#define EXIT_DEAD		32

#define PF_EXITING	0x00000004
#define PF_KTHREAD	0x00200000

#define TASK_COMM_LEN	16
#define DEF_TIMESLICE	2		/* ticks */

struct thread_struct {
	unsigned long rsp;		/* saved by switch_to */
	unsigned long rip;		/* informational: where it switched out */
	unsigned long rsp0;		/* top of kernel stack */
};

struct task_struct {
	volatile long state;		/* 0  TASK_* / EXIT_* */
	void *stack;			/* 8  base of 8 KiB stack (thread_info) */
	unsigned long flags;		/* 16 PF_* */
	int pid;			/* 24 */
	int cpu;			/* 28 */
	struct thread_struct thread;	/* 32 thread.rsp first */
	struct task_struct *parent;
	struct task_struct *next_task;	/* NULL-terminated list from init_task */
	long exit_code;
	int exit_signal;
	int time_slice;
	int on_rq;
	int oncpu;
	unsigned long nvcsw, nivcsw;	/* voluntary / involuntary switches */
	struct list_head run_list;
	char comm[TASK_COMM_LEN];
	wait_queue_head_t wait_chldexit;
	struct files_struct *files;
	struct mm_struct *mm;
	struct files_struct files_store;
	struct mm_struct mm_store;
#ifdef CONFIG_USERSPACE
	unsigned long fs, personality;	/* user FS base (arch_prctl); READ_IMPLIES_EXEC */
	unsigned long clear_child_tid;
	int used_math;			/* i387 holds this task's FPU/SSE state */
	int usedfpu;			/* TS_USEDFPU: its state is in the FPU now */
	unsigned char i387[512] __aligned(16);	/* fxsave area */
	/* signals (signal.c) */
	int pgrp;			/* process group: kill(0, ...) and kill(-pgrp, ...) */
	sigset_t blocked;
	struct sigpending pending;
	struct sighand_struct *sighand;
	struct sighand_struct sighand_store;
	unsigned long trap_no, error_code, cr2;	/* of the last user fault (sigcontext) */
	unsigned long sas_ss_sp, sas_ss_size;	/* sigaltstack */
	struct completion *vfork_done;	/* the vfork parent waits on it */
#endif
};

/* Exported for the host: where each field lives. */
struct task_struct_layout {
	unsigned int size, off_pid, off_comm, off_state, off_stack, off_parent,
		off_next_task, off_exit_code, off_cpu, stack_size;
};
extern const struct task_struct_layout task_struct_layout;

extern struct task_struct init_task;
extern union thread_union init_thread_union;
extern spinlock_t tasklist_lock;

#define set_current_state(s)	do { current->state = (s); barrier(); } while (0)
#define __set_current_state(s)	(current->state = (s))

static inline struct thread_info *task_thread_info(struct task_struct *p)
{
	return (struct thread_info *)p->stack;
}

static inline void set_tsk_need_resched(struct task_struct *p)
{
	task_thread_info(p)->flags |= 1UL << TIF_NEED_RESCHED;
}

static inline void clear_tsk_need_resched(struct task_struct *p)
{
	task_thread_info(p)->flags &= ~(1UL << TIF_NEED_RESCHED);
}

/* sched.c */
void sched_init(void);
void schedule(void);
void preempt_schedule_irq(void);
void scheduler_tick(void);
int wake_up_process(struct task_struct *p);
int try_to_wake_up(struct task_struct *p, unsigned int state);
void wake_up_new_task(struct task_struct *p, unsigned long clone_flags);
void sched_fork(struct task_struct *p);
void schedule_tail(struct task_struct *prev);
long schedule_timeout(long timeout);
long schedule_timeout_uninterruptible(long timeout);
int cond_resched(void);
void yield(void);
void io_schedule(void);
void cpu_idle(void) __noreturn;
struct task_struct *switch_to(struct task_struct *prev, struct task_struct *next);
void set_task_comm(struct task_struct *tsk, const char *buf);

/* fork.c */
#define CSIGNAL		0x000000ff
#define CLONE_VM	0x00000100
#define CLONE_FS	0x00000200
#define CLONE_FILES	0x00000400
#define CLONE_SIGHAND	0x00000800
#define CLONE_UNTRACED	0x00800000

long do_fork(unsigned long clone_flags, unsigned long stack_start,
	     struct pt_regs *regs, unsigned long stack_size);
long sys_clone(unsigned long clone_flags, unsigned long newsp,
	       void *parent_tid, void *child_tid, struct pt_regs *regs);
long kernel_thread(int (*fn)(void *), void *arg, unsigned long flags);
struct task_struct *find_task_by_pid(int pid);
int copy_thread(int nr, unsigned long clone_flags, unsigned long rsp,
		unsigned long unused, struct task_struct *p, struct pt_regs *regs);
void daemonize(const char *name);

/* exit.c */
void do_exit(long code) __noreturn;
void exit_thread(void);
long sys_wait4(pid_t pid, int *stat_addr, int options, void *ru);
long do_wait(pid_t pid, int options, int *stat_addr, void *ru);
int wait_task_zombie(struct task_struct *p, int *stat_addr, void *ru);
void release_task(struct task_struct *p);

/* exec.c / process.c */
void flush_thread(void);
void start_thread(struct pt_regs *regs, unsigned long new_rip, unsigned long new_rsp);

/* kprobes.c */
void kprobe_flush_task(struct task_struct *tk);

/* entry.S */
void ret_from_fork(void);
void child_rip(void);
void ret_from_execve(struct pt_regs *regs) __noreturn;
void ret_from_program(void);
void timer_interrupt(void);

/* traps.c */
void trap_init(void);

#ifdef CONFIG_SMP
/* smp.c, and the SMP parts of traps.c and sched.c */
extern volatile int num_online_cpus;
extern volatile int system_halting;
int smp_detect_cpus(void);
void smp_boot_cpus(void);
void load_idt(void);
void sched_init_secondary(void);
#endif
void time_init(void);
void do_timer_interrupt(struct pt_regs *regs);
extern unsigned long timer_ticks;

#ifdef CONFIG_USERSPACE
#include "uspace.h"
#else
/* SIGCHLD and friends exist only with user processes (signal.c) */
static inline void do_notify_parent(struct task_struct *tsk, int sig) { (void)tsk; (void)sig; }
static inline void forget_original_parent(struct task_struct *father) { (void)father; }
/* and so does vfork (fork.c) */
static inline void mm_release(struct task_struct *tsk, struct mm_struct *mm) { (void)tsk; (void)mm; }
#endif

#endif /* _MK_SCHED_H */

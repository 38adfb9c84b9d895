/*
 * fork.c - task creation (kernel/fork.c + arch/x86_64/kernel/process.c).
 *
 * Task structures and their 8 KiB, 8 KiB-aligned stacks come from
 * static pools.  All live tasks are on a NULL-terminated singly linked
 * list (next_task) starting at init_task; new tasks are appended.
 */
#include "sched.h"
#include "fs.h"

#define NR_TASKS	16

/* pid 0: the idle task, "swapper".  Its stack is the boot stack. */
union thread_union init_thread_union __aligned(THREAD_SIZE);

struct task_struct init_task = {
	.state		= TASK_RUNNING,
	.stack		= &init_thread_union,
	.flags		= PF_KTHREAD,
	.pid		= 0,
	.cpu		= 0,
	.thread		= { 0, 0, (unsigned long)&init_thread_union + THREAD_SIZE },
	.parent		= &init_task,
	.next_task	= NULL,
	.time_slice	= DEF_TIMESLICE,
	.oncpu		= 1,
	.run_list	= LIST_HEAD_INIT(init_task.run_list),
	.comm		= "swapper",
	.wait_chldexit	= __WAIT_QUEUE_HEAD_INITIALIZER(init_task.wait_chldexit),
	.files		= &init_task.files_store,
	.mm		= NULL,
};

/* The per-cpu data areas; GS_BASE points at cpu_pda[cpu]. */
struct x8664_pda cpu_pda[NR_CPUS] __aligned(64) = {
	[0] = {
		.pcurrent	= &init_task,
		.cpunumber	= 0,
		.kernelstack	= (unsigned long)&init_thread_union + THREAD_SIZE,
		.irqcount	= -1,
	},
	[1] = { .cpunumber = 1, .irqcount = -1 },
	[2] = { .cpunumber = 2, .irqcount = -1 },
	[3] = { .cpunumber = 3, .irqcount = -1 },
};

/* For the host: where the fields of struct task_struct are. */
__attribute__((used)) const struct task_struct_layout task_struct_layout = {
	.size		= sizeof(struct task_struct),
	.off_pid	= offsetof(struct task_struct, pid),
	.off_comm	= offsetof(struct task_struct, comm),
	.off_state	= offsetof(struct task_struct, state),
	.off_stack	= offsetof(struct task_struct, stack),
	.off_parent	= offsetof(struct task_struct, parent),
	.off_next_task	= offsetof(struct task_struct, next_task),
	.off_exit_code	= offsetof(struct task_struct, exit_code),
	.off_cpu	= offsetof(struct task_struct, cpu),
	.stack_size	= THREAD_SIZE,
};

spinlock_t tasklist_lock = SPIN_LOCK_UNLOCKED;

static struct task_struct task_pool[NR_TASKS];
static union thread_union stack_pool[NR_TASKS] __aligned(THREAD_SIZE);
static unsigned char task_pool_used[NR_TASKS];
static spinlock_t pool_lock = SPIN_LOCK_UNLOCKED;
int last_pid;
int nr_threads = 1;

__kfunc struct task_struct *alloc_task_struct(void)
{
	unsigned long flags;
	struct task_struct *p = NULL;

	spin_lock_irqsave(&pool_lock, flags);
	for (int i = 0; i < NR_TASKS; i++) {
		if (!task_pool_used[i]) {
			task_pool_used[i] = 1;
			p = &task_pool[i];
			p->stack = &stack_pool[i];
			break;
		}
	}
	spin_unlock_irqrestore(&pool_lock, flags);
	return p;
}

__kfunc void free_task_struct(struct task_struct *p)
{
	unsigned long flags;
	int i = p - task_pool;

	BUG_ON(i < 0 || i >= NR_TASKS);
	spin_lock_irqsave(&pool_lock, flags);
	memset(&stack_pool[i].thread_info, 0, sizeof(struct thread_info));
	memset(p, 0, sizeof(*p));
	task_pool_used[i] = 0;
	spin_unlock_irqrestore(&pool_lock, flags);
}

__kfunc struct task_struct *find_task_by_pid(int pid)
{
	struct task_struct *p;

	for (p = &init_task; p; p = p->next_task)
		if (p->pid == pid)
			return p;
	return NULL;
}

__kfunc int alloc_pidmap(void)
{
	return ++last_pid;
}

/*
 * copy_thread: put a copy of regs on top of the child's stack and build
 * a switch_to() frame below it that "returns" into ret_from_fork.
 */
__kfunc int copy_thread(int nr, unsigned long clone_flags, unsigned long rsp,
			unsigned long unused, struct task_struct *p,
			struct pt_regs *regs)
{
	unsigned long top = (unsigned long)p->stack + THREAD_SIZE;
	struct pt_regs *childregs = (struct pt_regs *)top - 1;
	unsigned long *frame;

	(void)nr;
	(void)clone_flags;
	(void)unused;
	*childregs = *regs;
	childregs->rax = 0;
#ifdef CONFIG_USERSPACE
	if (user_mode(regs)) {		/* fork from a program: back to user mode */
		if (rsp)
			childregs->rsp = rsp;
	} else
#endif
	{
	childregs->rsp = rsp ? rsp : ((unsigned long)childregs & ~15UL);
	childregs->cs = __KERNEL_CS;
	childregs->ss = __KERNEL_DS;
	}

	/* switch_to pops r15 r14 r13 r12 rbx rbp, then returns */
	frame = (unsigned long *)childregs - 7;
	for (int i = 0; i < 6; i++)
		frame[i] = 0;
	frame[6] = (unsigned long)ret_from_fork;
	p->thread.rsp = (unsigned long)frame;
	p->thread.rip = (unsigned long)ret_from_fork;
	p->thread.rsp0 = top;
	return 0;
}

__kfunc struct task_struct *copy_process(unsigned long clone_flags,
					  unsigned long stack_start,
					  struct pt_regs *regs,
					  unsigned long stack_size)
{
	struct task_struct *p, *q;
	struct thread_info *ti;
	unsigned long flags;
	void *stack;

	(void)stack_size;
#ifdef CONFIG_USERSPACE
	prepare_to_copy(current);
#endif
	p = alloc_task_struct();
	if (!p)
		return ERR_PTR(-EAGAIN);

	/* dup_task_struct(): the child starts as a copy of the parent */
	stack = p->stack;
	*p = *current;
	p->stack = stack;
	ti = task_thread_info(p);
	ti->task = p;

	p->pid = alloc_pidmap();
	p->parent = current;
	p->next_task = NULL;
	p->exit_code = 0;
	p->exit_signal = clone_flags & CSIGNAL;
	p->flags &= ~PF_EXITING;
	init_waitqueue_head(&p->wait_chldexit);
	p->files = &p->files_store;
	init_files(p->files);
	p->mm = NULL;
#ifdef CONFIG_USERSPACE
	if (current->mm && current->mm->pgd) {
		struct mm_struct *mm = &p->mm_store;
		struct task_struct *me = current;

		/* vfork: the child borrows the parent's address space (the parent waits) */
		if (clone_flags & CLONE_VFORK) {
			memset(mm, 0, sizeof(*mm));
			p->mm = me->mm;
			p->usedfpu = 0;
		} else if (!copy_user_mm(p, me, mm)) {
			free_task_struct(p);
			return ERR_PTR(-ENOMEM);
		}
		copy_files(p);
	}
	copy_sighand(p);
	if (clone_flags & CLONE_CLEAR_SIGHAND)
		flush_signal_handlers(p);
	p->vfork_done = NULL;
#endif
	sched_fork(p);
	copy_thread(0, clone_flags, stack_start, 0, p, regs);

	/* link at the tail of the task list */
	spin_lock_irqsave(&tasklist_lock, flags);
	for (q = &init_task; q->next_task; q = q->next_task)
		;
	q->next_task = p;
	nr_threads++;
	spin_unlock_irqrestore(&tasklist_lock, flags);
	return p;
}

__kfunc long do_fork(unsigned long clone_flags, unsigned long stack_start,
		     struct pt_regs *regs, unsigned long stack_size)
{
	struct task_struct *p;
	long pid;

	p = copy_process(clone_flags, stack_start, regs, stack_size);
	if (IS_ERR(p))
		return PTR_ERR(p);
	pid = p->pid;
#ifdef CONFIG_USERSPACE
	if (clone_flags & CLONE_VFORK) {
		struct completion vfork = { 0, current };

		p->vfork_done = &vfork;
		wake_up_new_task(p, clone_flags);
		wait_for_completion(&vfork);
		return pid;
	}
#endif
	wake_up_new_task(p, clone_flags);
	return pid;
}

__kfunc long sys_clone(unsigned long clone_flags, unsigned long newsp,
		       void *parent_tid, void *child_tid, struct pt_regs *regs)
{
	(void)parent_tid;
	(void)child_tid;
	if (!newsp)
		newsp = 0;	/* 0: use the child's own kernel stack */
	return do_fork(clone_flags, newsp, regs, 0);
}

/*
 * Create a kernel thread: the child enters child_rip with rdi = fn and
 * rsi = arg, and calls do_exit(fn(arg)).
 */
__kfunc long kernel_thread(int (*fn)(void *), void *arg, unsigned long flags)
{
	struct pt_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rdi = (unsigned long)fn;
	regs.rsi = (unsigned long)arg;
	regs.orig_rax = -1;
	regs.rip = (unsigned long)child_rip;
	regs.cs = __KERNEL_CS;
	regs.ss = __KERNEL_DS;
	regs.eflags = X86_EFLAGS_IF | 0x2;
	return do_fork(flags | CLONE_VM | CLONE_UNTRACED, 0, &regs, 0);
}

/* Detach a kernel thread from its creator's identity and name it. */
__kfunc void daemonize(const char *name)
{
	set_task_comm(current, name);
	current->flags |= PF_KTHREAD;
}

#ifdef CONFIG_USERSPACE
/* kernel/sched.c: wait_for_completion() (uninterruptible, as in 2.6.12) */
__kfunc void wait_for_completion(struct completion *x)
{
	for (;;) {
		set_current_state(TASK_UNINTERRUPTIBLE);
		if (ACCESS_ONCE(x->done))
			break;
		schedule();
	}
	__set_current_state(TASK_RUNNING);
}

__kfunc void complete(struct completion *x)
{
	x->done = 1;
	wake_up_process(x->waiter);
}

/* The task is done with its address space (exit, or exec): a vfork parent goes on. */
__kfunc void mm_release(struct task_struct *tsk, struct mm_struct *mm)
{
	struct completion *vfork_done = tsk->vfork_done;

	(void)mm;
	if (vfork_done) {
		tsk->vfork_done = NULL;
		complete(vfork_done);
	}
}
#endif

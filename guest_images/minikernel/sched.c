/*
 * sched.c - a round-robin scheduler shaped like Linux 2.6 kernel/sched.c:
 * per-cpu run queues under a spinlock, time slices, TIF_NEED_RESCHED,
 * preempt_count, PREEMPT_ACTIVE, wait queues and schedule_timeout().
 */
#include "sched.h"

struct runqueue {
	spinlock_t lock;
	unsigned long nr_running;
	unsigned long nr_switches;
	unsigned long nr_uninterruptible;
	struct task_struct *curr, *idle;
	struct list_head queue;		/* runnable tasks except idle */
};

struct runqueue runqueues[NR_CPUS];

#define cpu_rq(cpu)	(&runqueues[(cpu)])
#define this_rq()	cpu_rq(smp_processor_id())
#define task_rq(p)	cpu_rq((p)->cpu)

/* Layout checks: asm-offsets.h must agree with the C structures. */
_Static_assert(offsetof(struct x8664_pda, pcurrent) == PDA_pcurrent, "pda");
_Static_assert(offsetof(struct x8664_pda, cpunumber) == PDA_cpunumber, "pda");
_Static_assert(offsetof(struct x8664_pda, kernelstack) == PDA_kernelstack, "pda");
_Static_assert(offsetof(struct x8664_pda, irqcount) == PDA_irqcount, "pda");
_Static_assert(sizeof(struct x8664_pda) == PDA_SIZE, "pda");
_Static_assert(offsetof(struct thread_info, task) == TI_task, "ti");
_Static_assert(offsetof(struct thread_info, flags) == TI_flags, "ti");
_Static_assert(offsetof(struct thread_info, cpu) == TI_cpu, "ti");
_Static_assert(offsetof(struct thread_info, preempt_count) == TI_preempt_count, "ti");
_Static_assert(offsetof(struct task_struct, state) == TASK_state, "task");
_Static_assert(offsetof(struct task_struct, stack) == TASK_stack, "task");
_Static_assert(offsetof(struct task_struct, thread.rsp) == TASK_thread_rsp, "task");
_Static_assert(offsetof(struct pt_regs, rbp) == RBP, "regs");
_Static_assert(offsetof(struct pt_regs, rdi) == RDI, "regs");
_Static_assert(offsetof(struct pt_regs, orig_rax) == ORIG_RAX, "regs");
_Static_assert(offsetof(struct pt_regs, rip) == RIP, "regs");
_Static_assert(offsetof(struct pt_regs, eflags) == EFLAGS, "regs");
_Static_assert(offsetof(struct pt_regs, ss) == SS, "regs");
_Static_assert(sizeof(struct pt_regs) == PT_REGS_SIZE, "regs");
_Static_assert(sizeof(union thread_union) == THREAD_SIZE, "stack");

/* ------------------------------------------------------------------ */
/* Run queue manipulation: called with rq->lock held */

__kfunc void activate_task(struct task_struct *p, struct runqueue *rq)
{
	list_add_tail(&p->run_list, &rq->queue);
	p->on_rq = 1;
	rq->nr_running++;
}

__kfunc void deactivate_task(struct task_struct *p, struct runqueue *rq)
{
	list_del_init(&p->run_list);
	p->on_rq = 0;
	rq->nr_running--;
	if (p->state == TASK_UNINTERRUPTIBLE)
		rq->nr_uninterruptible++;
}

static void resched_task(struct task_struct *p)
{
	set_tsk_need_resched(p);
}

/* Round robin: the previous task (if still runnable) goes to the back. */
__kfunc struct task_struct *pick_next_task(struct runqueue *rq, struct task_struct *prev)
{
	if (prev != rq->idle && prev->on_rq)
		list_move_tail(&prev->run_list, &rq->queue);
	if (list_empty(&rq->queue))
		return rq->idle;
	return list_entry(rq->queue.next, struct task_struct, run_list);
}

/* ------------------------------------------------------------------ */

__kfunc void sched_init(void)
{
	for (int i = 0; i < NR_CPUS; i++) {
		struct runqueue *rq = cpu_rq(i);

		spin_lock_init(&rq->lock);
		INIT_LIST_HEAD(&rq->queue);
		rq->nr_running = 0;
	}
	this_rq()->curr = this_rq()->idle = current;
	current->oncpu = 1;
}

/* Called with interrupts off from do_timer_interrupt(). */
__kfunc void scheduler_tick(void)
{
	struct task_struct *p = current;
	struct runqueue *rq = this_rq();

	if (p == rq->idle) {
		if (rq->nr_running)
			resched_task(p);
		return;
	}
	spin_lock(&rq->lock);
	if (--p->time_slice <= 0) {
		p->time_slice = DEF_TIMESLICE;
		resched_task(p);
	}
	spin_unlock(&rq->lock);
}

__kfunc void finish_task_switch(struct task_struct *prev)
{
	prev->oncpu = 0;
	if (prev->state & (EXIT_ZOMBIE | EXIT_DEAD))
		prev->thread.rip = 0;	/* will never run again */
}

/*
 * schedule(): the main scheduler function.  The run queue lock is held
 * across switch_to() and released by the task that runs next (in its
 * own schedule() frame, or in schedule_tail() for a new task).  The
 * interrupt flag is saved in schedule()'s frame and restored there.
 */
__kfunc void schedule(void)
{
	struct task_struct *prev, *next;
	struct runqueue *rq;
	unsigned long flags;

need_resched:
	preempt_disable();
	prev = current;
	rq = this_rq();

	spin_lock_irqsave(&rq->lock, flags);
	if (prev->state != TASK_RUNNING && !(preempt_count() & PREEMPT_ACTIVE)) {
		if (prev->on_rq)
			deactivate_task(prev, rq);
		prev->nvcsw++;
	} else if (prev != rq->idle) {
		prev->nivcsw++;
	}

	next = pick_next_task(rq, prev);
	clear_tsk_need_resched(prev);

	if (likely(prev != next)) {
		rq->nr_switches++;
		rq->curr = next;
		next->oncpu = 1;
		if (next != rq->idle && next->time_slice <= 0)
			next->time_slice = DEF_TIMESLICE;
		prev->thread.rip = (unsigned long)__builtin_return_address(0);
		prev = switch_to(prev, next);
		barrier();
		/* we are now "next"; prev is the task we came from */
		finish_task_switch(prev);
	}
	_raw_spin_unlock(&this_rq()->lock);
	preempt_enable_no_resched();
	local_irq_restore(flags);
	preempt_enable_no_resched();
	if (need_resched())
		goto need_resched;
}

/* First code run by a new task (from ret_from_fork). */
__kfunc void schedule_tail(struct task_struct *prev)
{
	finish_task_switch(prev);
	_raw_spin_unlock(&this_rq()->lock);
	preempt_enable_no_resched();	/* sched_fork() set it to 1 */
	local_irq_enable();
}

/* preempt_enable() found need_resched: preempt unless atomic. */
__kfunc void preempt_schedule(void)
{
	struct thread_info *ti = current_thread_info();

	if (likely(ti->preempt_count || irqs_disabled()))
		return;
	do {
		ti->preempt_count += PREEMPT_ACTIVE;
		schedule();
		ti->preempt_count -= PREEMPT_ACTIVE;
		barrier();
	} while (need_resched());
}

/* Called from the interrupt return path with IF=0; returns with IF=0. */
__kfunc void preempt_schedule_irq(void)
{
	struct thread_info *ti = current_thread_info();

	BUG_ON(ti->preempt_count || !irqs_disabled());
	do {
		ti->preempt_count += PREEMPT_ACTIVE;
		local_irq_enable();
		schedule();
		local_irq_disable();
		ti->preempt_count -= PREEMPT_ACTIVE;
		barrier();
	} while (need_resched());
}

__kfunc int try_to_wake_up(struct task_struct *p, unsigned int state)
{
	struct runqueue *rq = task_rq(p);
	unsigned long flags;
	int success = 0;

	spin_lock_irqsave(&rq->lock, flags);
	if (p->state & state) {
		if (!p->on_rq)
			activate_task(p, rq);
		p->state = TASK_RUNNING;
		if (rq->curr == rq->idle)
			resched_task(rq->idle);
		success = 1;
	}
	spin_unlock_irqrestore(&rq->lock, flags);
	return success;
}

__kfunc int wake_up_process(struct task_struct *p)
{
	return try_to_wake_up(p, TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE |
			      TASK_STOPPED);
}

#ifdef CONFIG_SMP
static int sched_next_cpu;	/* only init forks: no lock needed */

/* An AP's run queue gets its idle task (sched_init did the rest). */
__kfunc void sched_init_secondary(void)
{
	struct runqueue *rq = this_rq();

	rq->curr = rq->idle = current;
	current->oncpu = 1;
}
#endif

__kfunc void sched_fork(struct task_struct *p)
{
	p->state = TASK_RUNNING;
	INIT_LIST_HEAD(&p->run_list);
	p->on_rq = 0;
	p->oncpu = 0;
#ifdef CONFIG_SMP
	/* Spread new tasks over the online CPUs in turn; they stay there. */
	p->cpu = sched_next_cpu;
	sched_next_cpu = (sched_next_cpu + 1) % num_online_cpus;
#else
	p->cpu = smp_processor_id();
#endif
	p->time_slice = DEF_TIMESLICE;
	p->nvcsw = p->nivcsw = 0;
	/* the child starts inside schedule(), holding the rq lock */
	task_thread_info(p)->preempt_count = 1;
	task_thread_info(p)->flags = 0;
	task_thread_info(p)->cpu = p->cpu;
}

__kfunc void wake_up_new_task(struct task_struct *p, unsigned long clone_flags)
{
	struct runqueue *rq = task_rq(p);
	unsigned long flags;

	(void)clone_flags;
	spin_lock_irqsave(&rq->lock, flags);
	activate_task(p, rq);
	if (rq->curr == rq->idle)
		resched_task(rq->idle);
	spin_unlock_irqrestore(&rq->lock, flags);
}

__kfunc int cond_resched(void)
{
	if (need_resched() && !preempt_count()) {
		schedule();
		return 1;
	}
	return 0;
}

__kfunc void yield(void)
{
	set_tsk_need_resched(current);
	schedule();
}

__kfunc void set_task_comm(struct task_struct *tsk, const char *buf)
{
	unsigned long flags;

	spin_lock_irqsave(&tasklist_lock, flags);
	strlcpy(tsk->comm, buf, sizeof(tsk->comm));
	spin_unlock_irqrestore(&tasklist_lock, flags);
}

/* ------------------------------------------------------------------ */
/* Wait queues (kernel/wait.c) */

__kfunc void init_waitqueue_head(wait_queue_head_t *q)
{
	spin_lock_init(&q->lock);
	INIT_LIST_HEAD(&q->task_list);
}

__kfunc void add_wait_queue(wait_queue_head_t *q, wait_queue_t *wait)
{
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	list_add_tail(&wait->task_list, &q->task_list);
	spin_unlock_irqrestore(&q->lock, flags);
}

__kfunc void remove_wait_queue(wait_queue_head_t *q, wait_queue_t *wait)
{
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	list_del_init(&wait->task_list);
	spin_unlock_irqrestore(&q->lock, flags);
}

__kfunc void __wake_up(wait_queue_head_t *q, unsigned int mode, int nr_exclusive)
{
	struct list_head *pos, *n;
	unsigned long flags;

	(void)nr_exclusive;
	spin_lock_irqsave(&q->lock, flags);
	list_for_each_safe(pos, n, &q->task_list) {
		wait_queue_t *w = list_entry(pos, wait_queue_t, task_list);
		try_to_wake_up(w->task, mode);
	}
	spin_unlock_irqrestore(&q->lock, flags);
}

/* ------------------------------------------------------------------ */
/* Timers (kernel/timer.c), run from the timer interrupt */

volatile unsigned long jiffies;
static spinlock_t timer_lock = SPIN_LOCK_UNLOCKED;
static LIST_HEAD(timer_list_head);

__kfunc void init_timer(struct timer_list *timer)
{
	INIT_LIST_HEAD(&timer->entry);
}

__kfunc void add_timer(struct timer_list *timer)
{
	unsigned long flags;

	spin_lock_irqsave(&timer_lock, flags);
	list_add_tail(&timer->entry, &timer_list_head);
	spin_unlock_irqrestore(&timer_lock, flags);
}

__kfunc int del_timer(struct timer_list *timer)
{
	unsigned long flags;
	int pending;

	spin_lock_irqsave(&timer_lock, flags);
	pending = !list_empty(&timer->entry);
	if (pending)
		list_del_init(&timer->entry);
	spin_unlock_irqrestore(&timer_lock, flags);
	return pending;
}

__kfunc void run_local_timers(void)
{
	struct list_head *pos, *n;

	spin_lock(&timer_lock);
	list_for_each_safe(pos, n, &timer_list_head) {
		struct timer_list *t = list_entry(pos, struct timer_list, entry);

		if ((long)(jiffies - t->expires) >= 0) {
			list_del_init(&t->entry);
			t->function(t->data);
		}
	}
	spin_unlock(&timer_lock);
}

__kfunc void process_timeout(unsigned long data)
{
	wake_up_process((struct task_struct *)data);
}

/* Sleep for `timeout` ticks; the caller sets current->state first. */
__kfunc long schedule_timeout(long timeout)
{
	struct timer_list timer;
	unsigned long expire = jiffies + timeout;

	init_timer(&timer);
	timer.expires = expire;
	timer.data = (unsigned long)current;
	timer.function = process_timeout;
	add_timer(&timer);
	schedule();
	del_timer(&timer);
	timeout = (long)(expire - jiffies);
	return timeout < 0 ? 0 : timeout;
}

__kfunc long schedule_timeout_uninterruptible(long timeout)
{
	set_current_state(TASK_UNINTERRUPTIBLE);
	return schedule_timeout(timeout);
}

/* Wait for simulated I/O completion (one timer tick). */
__kfunc void io_schedule(void)
{
	schedule_timeout_uninterruptible(1);
}

/* The idle task: pid 0, "swapper". */
__kfunc void cpu_idle(void)
{
	for (;;) {
		while (!need_resched()) {
#ifdef CONFIG_SMP
			if (unlikely(system_halting))
				machine_halt();	/* park: cli; hlt */
#endif
			local_irq_disable();
			if (!need_resched())
				safe_halt();	/* sti; hlt */
			else
				local_irq_enable();
		}
		schedule();
	}
}

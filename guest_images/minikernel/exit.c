/*
 * exit.c - task exit and reaping (kernel/exit.c).
 */
#include "sched.h"
#include "fs.h"
extern int nr_threads;
void free_task_struct(struct task_struct *p);

/* arch/x86_64/kernel/process.c: called on the do_exit() path. */
__kfunc void exit_thread(void)
{
	struct task_struct *me = current;

	/* Remove function-return probe instances associated with this task
	 * and put them back on the free list. */
	kprobe_flush_task(me);
	me->thread.rip = 0;
}

__kfunc void exit_mm(struct task_struct *tsk)
{
	mm_release(tsk, tsk->mm);
	tsk->mm = NULL;
}

/* Make tsk a zombie and tell its parent. */
__kfunc void exit_notify(struct task_struct *tsk)
{
	struct task_struct *parent;
	unsigned long flags;

	spin_lock_irqsave(&tasklist_lock, flags);
	forget_original_parent(tsk);
	parent = tsk->parent;
	tsk->state = EXIT_ZOMBIE;
	spin_unlock_irqrestore(&tasklist_lock, flags);
	do_notify_parent(tsk, tsk->exit_signal);
	wake_up_interruptible(&parent->wait_chldexit);
}

__kfunc void do_exit(long code)
{
	struct task_struct *tsk = current;

	if (unlikely(in_interrupt()))
		panic("Aiee, killing interrupt handler!");
	if (unlikely(tsk->pid == 0))
		panic("Attempted to kill the idle task!");
	if (unlikely(tsk->pid == 1))
		panic("Attempted to kill init!");

	tsk->flags |= PF_EXITING;
	exit_mm(tsk);
	exit_files(tsk);
	tsk->exit_code = code;
	exit_thread();

	preempt_disable();
	exit_notify(tsk);
	schedule();
	BUG();		/* a zombie never runs again */
	for (;;)
		;
}

__kfunc long sys_exit(int error_code)
{
	do_exit((error_code & 0xff) << 8);
}

/* Unlink a dead task from the task list and free it. */
__kfunc void release_task(struct task_struct *p)
{
	struct task_struct *q;
	unsigned long flags;

	/* on SMP the zombie may still be finishing switch_to() elsewhere */
	while (ACCESS_ONCE(p->oncpu))
		cpu_relax();

	spin_lock_irqsave(&tasklist_lock, flags);
	for (q = &init_task; q->next_task; q = q->next_task) {
		if (q->next_task == p) {
			q->next_task = p->next_task;
			break;
		}
	}
	p->next_task = NULL;
	nr_threads--;
	spin_unlock_irqrestore(&tasklist_lock, flags);
	free_task_struct(p);
}

__kfunc int wait_task_zombie(struct task_struct *p, int *stat_addr, void *ru)
{
	int pid = p->pid;

	(void)ru;
	p->state = EXIT_DEAD;
#ifdef CONFIG_USERSPACE
	mmput(&p->mm_store);		/* the address space goes with the zombie */
#endif
	if (stat_addr)
		*stat_addr = (int)p->exit_code;
	release_task(p);
	return pid;
}

#define WNOHANG 0x00000001
#define WNOWAIT 0x01000000

__kfunc long do_wait(pid_t pid, int options, int *stat_addr, void *ru)
{
	DECLARE_WAITQUEUE(wait, current);
	struct task_struct *tsk = current, *p;
	unsigned long flags;
	long retval;
	int flag;

	add_wait_queue(&tsk->wait_chldexit, &wait);
repeat:
	flag = 0;
	set_current_state(TASK_INTERRUPTIBLE);
	spin_lock_irqsave(&tasklist_lock, flags);
	for (p = init_task.next_task; p; p = p->next_task) {
		if (p->parent != tsk)
			continue;
		if (pid > 0 && p->pid != pid)
			continue;
		flag = 1;
		if (p->state == EXIT_ZOMBIE) {
			spin_unlock_irqrestore(&tasklist_lock, flags);
			__set_current_state(TASK_RUNNING);
			if (options & WNOWAIT) {	/* leave it a zombie */
				if (stat_addr)
					*stat_addr = (int)p->exit_code;
				retval = p->pid;
				goto end;
			}
			retval = wait_task_zombie(p, stat_addr, ru);
			goto end;
		}
	}
	spin_unlock_irqrestore(&tasklist_lock, flags);
	if (flag) {
		retval = 0;
		if (options & WNOHANG)
			goto end;
#ifdef CONFIG_USERSPACE
		retval = -ERESTARTSYS;
		if (signal_pending(current))
			goto end;
#endif
		schedule();
		goto repeat;
	}
	retval = -ECHILD;
end:
	__set_current_state(TASK_RUNNING);
	remove_wait_queue(&tsk->wait_chldexit, &wait);
	return retval;
}

__kfunc long sys_wait4(pid_t pid, int *stat_addr, int options, void *ru)
{
	return do_wait(pid, options, stat_addr, ru);
}

/*
 * signal.c - signals (kernel/signal.c, and the x86_64 frame code of
 * arch/x86_64/kernel/signal.c).  CONFIG_USERSPACE builds only.
 *
 * A signal is sent by setting its bit in the task's pending set (one of
 * each number) and TIF_SIGPENDING when it is not blocked; an
 * interruptible sleeper is woken and its system call returns
 * -ERESTARTSYS.  On every way back to user mode (entry.S) a task with
 * TIF_SIGPENDING calls do_notify_resume(), which runs the default action
 * or builds a struct rt_sigframe on the user stack and enters the
 * handler; the handler returns through its SA_RESTORER stub into
 * rt_sigreturn, which restores the registers and the FPU state.
 */
#include "uspace.h"

#define ERESTARTNOINTR		513
#define ERESTARTNOHAND		514
#define ERESTART_RESTARTBLOCK	516

#define SI_USER		0
#define SI_KERNEL	0x80
#define CLD_EXITED	1
#define CLD_KILLED	2

#define SIG_BLOCK	0
#define SIG_UNBLOCK	1
#define SIG_SETMASK	2

#define SS_ONSTACK	1
#define SS_DISABLE	2
#define MINSIGSTKSZ	2048

/* default actions (kernel/signal.c's SIG_KERNEL_*_MASK) */
#define SIG_KERNEL_ONLY_MASK	(sigmask(SIGKILL) | sigmask(SIGSTOP))
#define SIG_KERNEL_IGNORE_MASK	(sigmask(SIGCONT) | sigmask(SIGCHLD) | sigmask(SIGWINCH) | sigmask(SIGURG))
#define SIG_KERNEL_STOP_MASK	(sigmask(SIGSTOP) | sigmask(SIGTSTP) | sigmask(SIGTTIN) | sigmask(SIGTTOU))
#define SIG_KERNEL_COREDUMP_MASK (sigmask(SIGQUIT) | sigmask(SIGILL) | sigmask(SIGTRAP) | sigmask(SIGABRT) | \
				  sigmask(SIGFPE) | sigmask(SIGSEGV) | sigmask(SIGBUS) | sigmask(SIGSYS) | \
				  sigmask(SIGXCPU) | sigmask(SIGXFSZ))

void unlazy_fpu(struct task_struct *tsk);

/* ------------------------------------------------------------------ */
/* TIF_SIGPENDING: set and cleared with locked bit instructions, since a
 * tick may set TIF_NEED_RESCHED in the same word meanwhile. */

static inline void set_ti_flag(struct task_struct *t, int flag)
{
	__asm__ __volatile__("lock btsq %1,%0" : "+m"(task_thread_info(t)->flags) : "Ir"((long)flag) : "memory");
}

static inline void clear_ti_flag(struct task_struct *t, int flag)
{
	__asm__ __volatile__("lock btrq %1,%0" : "+m"(task_thread_info(t)->flags) : "Ir"((long)flag) : "memory");
}

__kfunc int signal_pending(struct task_struct *p)
{
	return (task_thread_info(p)->flags >> TIF_SIGPENDING) & 1;
}

__kfunc void recalc_sigpending_tsk(struct task_struct *t)
{
	if (t->pending.signal & ~t->blocked)
		set_ti_flag(t, TIF_SIGPENDING);
	else
		clear_ti_flag(t, TIF_SIGPENDING);
}

static struct k_sigaction *sig_action(struct task_struct *t, int sig)
{
	return &t->sighand->action[sig - 1];
}

/* Only processes (a task with its own user address space) get signals. */
static int is_user_task(struct task_struct *p)
{
	return p->pid > 1 && p->mm && p->mm->pgd && !(p->flags & PF_EXITING) && p->state < EXIT_ZOMBIE;
}

/* A signal nobody will see: ignored, and not blocked (a blocked one waits). */
static int sig_ignored(struct task_struct *t, int sig)
{
	void *handler = sig_action(t, sig)->sa.sa_handler;

	if (t->blocked & sigmask(sig))
		return 0;
	return handler == SIG_IGN || (handler == SIG_DFL && (sigmask(sig) & SIG_KERNEL_IGNORE_MASK));
}

/* kernel/signal.c: signal_wake_up() */
__kfunc void signal_wake_up(struct task_struct *t)
{
	set_ti_flag(t, TIF_SIGPENDING);
	try_to_wake_up(t, TASK_INTERRUPTIBLE);
}

__kfunc int specific_send_sig_info(int sig, struct ksiginfo *info, struct task_struct *t)
{
	unsigned long flags;

	local_irq_save(flags);
	if (!sig_ignored(t, sig) && !(t->pending.signal & sigmask(sig))) {
		t->pending.signal |= sigmask(sig);
		t->pending.info[sig - 1] = *info;
		if (!(t->blocked & sigmask(sig)))
			signal_wake_up(t);
	}
	local_irq_restore(flags);
	return 0;
}

int send_sig(int sig, struct task_struct *p, int priv)
{
	struct ksiginfo info = { .si_code = priv ? SI_KERNEL : SI_USER, .si_pid = priv ? 0 : current->pid };

	return specific_send_sig_info(sig, &info, p);
}

/* A synchronous signal (a fault): it cannot be ignored or blocked. */
__kfunc int force_sig_info(int sig, struct ksiginfo *info, struct task_struct *t)
{
	struct k_sigaction *ka = sig_action(t, sig);

	if (ka->sa.sa_handler == SIG_IGN || (t->blocked & sigmask(sig))) {
		ka->sa.sa_handler = SIG_DFL;
		t->blocked &= ~sigmask(sig);
	}
	return specific_send_sig_info(sig, info, t);
}

/* No room for a signal frame: SIGSEGV, with its default action if that was the signal. */
__kfunc void force_sigsegv(int sig, struct task_struct *p)
{
	struct ksiginfo info = { .si_code = SI_KERNEL };

	if (sig == SIGSEGV)
		sig_action(p, SIGSEGV)->sa.sa_handler = SIG_DFL;
	force_sig_info(SIGSEGV, &info, p);
}

/* Does the task have a handler for sig that will run (for the segfault line)? */
int unhandled_signal(struct task_struct *t, int sig)
{
	void *handler = sig_action(t, sig)->sa.sa_handler;

	return handler == SIG_DFL || handler == SIG_IGN || (t->blocked & sigmask(sig));
}

/*
 * exit_notify(): the parent hears of a child's death (SIGCHLD by default).
 * A parent that ignores SIGCHLD (or asked SA_NOCLDWAIT) does not wait for
 * its children: the zombie goes to init, which reaps it, and the parent's
 * wait4 sees one child fewer (ECHILD when none is left).
 */
__kfunc void do_notify_parent(struct task_struct *tsk, int sig)
{
	struct task_struct *parent = tsk->parent, *reaper = init_task.next_task;	/* pid 1 */
	struct ksiginfo info = { .si_pid = tsk->pid };
	struct k_sigaction *ka;
	int status = (int)tsk->exit_code;
	unsigned long flags;

	if (!sig || !is_user_task(parent))
		return;
	info.si_code = status & 0x7f ? CLD_KILLED : CLD_EXITED;
	info.si_status = status & 0x7f ? status & 0x7f : (status >> 8) & 0xff;
	ka = sig_action(parent, SIGCHLD);
	if (sig == SIGCHLD && (ka->sa.sa_handler == SIG_IGN || (ka->sa.sa_flags & SA_NOCLDWAIT))) {
		spin_lock_irqsave(&tasklist_lock, flags);
		tsk->parent = reaper;
		spin_unlock_irqrestore(&tasklist_lock, flags);
		wake_up_interruptible(&reaper->wait_chldexit);
	}
	specific_send_sig_info(sig, &info, parent);
}

/*
 * kernel/exit.c: the children of an exiting process go to init (the
 * child_reaper), which reaps them; a zombie among them wakes it.  Called
 * with tasklist_lock held.
 */
__kfunc void forget_original_parent(struct task_struct *father)
{
	struct task_struct *reaper = init_task.next_task, *p;	/* pid 1 */
	int zombies = 0;

	if (!reaper || reaper == father)
		return;
	for (p = init_task.next_task; p; p = p->next_task) {
		if (p->parent == father) {
			p->parent = reaper;
			zombies += p->state == EXIT_ZOMBIE;
		}
	}
	if (zombies)
		wake_up_interruptible(&reaper->wait_chldexit);
}

/* ------------------------------------------------------------------ */
/* kill(2) */

static int check_kill_target(struct task_struct *p, int sig)
{
	struct ksiginfo info = { .si_code = SI_USER, .si_pid = current->pid };

	if (sig)
		specific_send_sig_info(sig, &info, p);
	return 0;
}

/* kill_pg_info(): every process of group pgrp; -ESRCH when there is none. */
__kfunc int kill_pg_info(int sig, int pgrp)
{
	struct task_struct *p;
	int found = 0;

	for (p = init_task.next_task; p; p = p->next_task) {
		if (p->pgrp == pgrp && (is_user_task(p) || p == current)) {
			check_kill_target(p, sig);
			found = 1;
		}
	}
	return found ? 0 : -ESRCH;
}

__kfunc int kill_proc_info(int sig, int pid)
{
	struct task_struct *p = find_task_by_pid(pid);

	if (!p || p->pid <= 1 || !(p->mm && p->mm->pgd))
		return -ESRCH;
	if (p->state >= EXIT_ZOMBIE || (p->flags & PF_EXITING))
		return 0;		/* a zombie takes the signal and ignores it */
	return check_kill_target(p, sig);
}

__kfunc int kill_something_info(int sig, int pid)
{
	if (!pid)
		return kill_pg_info(sig, current->pgrp);
	if (pid == -1) {		/* every process but init and the caller */
		struct task_struct *p;
		int found = 0;

		for (p = init_task.next_task; p; p = p->next_task) {
			if (p != current && is_user_task(p)) {
				check_kill_target(p, sig);
				found = 1;
			}
		}
		return found ? 0 : -ESRCH;
	}
	if (pid < 0)
		return kill_pg_info(sig, -pid);
	return kill_proc_info(sig, pid);
}

__kfunc long sys_kill(int pid, int sig)
{
	if (sig < 0 || sig > _NSIG)
		return -EINVAL;
	return kill_something_info(sig, pid);
}

/* tkill/tgkill: a process has one thread here, its pid. */
__kfunc long sys_tgkill(int tgid, int pid, int sig)
{
	if (pid <= 0 || tgid <= 0)
		return -EINVAL;
	if (tgid != pid)
		return -ESRCH;
	return sys_kill(pid, sig);
}

__kfunc long sys_tkill(int pid, int sig)
{
	if (pid <= 0)
		return -EINVAL;
	return sys_kill(pid, sig);
}

/* ------------------------------------------------------------------ */
/* Actions and masks */

__kfunc int do_sigaction(int sig, struct k_sigaction *act, struct k_sigaction *oact)
{
	struct k_sigaction *k;

	if (sig < 1 || sig > _NSIG || (act && (sigmask(sig) & SIG_KERNEL_ONLY_MASK)))
		return -EINVAL;
	k = sig_action(current, sig);
	if (oact)
		*oact = *k;
	if (act) {
		*k = *act;
		k->sa.sa_mask &= ~SIG_KERNEL_ONLY_MASK;
		/* POSIX: setting a pending signal to be ignored discards it */
		if (k->sa.sa_handler == SIG_IGN ||
		    (k->sa.sa_handler == SIG_DFL && (sigmask(sig) & SIG_KERNEL_IGNORE_MASK))) {
			current->pending.signal &= ~sigmask(sig);
			recalc_sigpending_tsk(current);
		}
	}
	return 0;
}

__kfunc long sys_rt_sigaction(int sig, const struct sigaction *act, struct sigaction *oact, size_t sigsetsize)
{
	struct k_sigaction new_ka, old_ka;
	int ret;

	if (sigsetsize != sizeof(sigset_t))
		return -EINVAL;
	if (act && copy_from_user(&new_ka.sa, act, sizeof(new_ka.sa)))
		return -EFAULT;
	ret = do_sigaction(sig, act ? &new_ka : NULL, oact ? &old_ka : NULL);
	if (!ret && oact && copy_to_user(oact, &old_ka.sa, sizeof(old_ka.sa)))
		return -EFAULT;
	return ret;
}

__kfunc long sys_rt_sigprocmask(int how, const sigset_t *set, sigset_t *oset, size_t sigsetsize)
{
	sigset_t old = current->blocked, new;

	if (sigsetsize != sizeof(sigset_t))
		return -EINVAL;
	if (set) {
		if (copy_from_user(&new, set, sizeof(new)))
			return -EFAULT;
		new &= ~SIG_KERNEL_ONLY_MASK;
		if (how == SIG_BLOCK)
			new = old | new;
		else if (how == SIG_UNBLOCK)
			new = old & ~new;
		else if (how != SIG_SETMASK)
			return -EINVAL;
		current->blocked = new;
		recalc_sigpending_tsk(current);
	}
	if (oset && copy_to_user(oset, &old, sizeof(old)))
		return -EFAULT;
	return 0;
}

__kfunc long sys_rt_sigpending(sigset_t *set, size_t sigsetsize)
{
	sigset_t pending = current->pending.signal & current->blocked;

	if (sigsetsize != sizeof(sigset_t))
		return -EINVAL;
	return copy_to_user(set, &pending, sizeof(pending));
}

/* pause(): sleep until a signal is delivered. */
__kfunc long sys_pause(void)
{
	set_current_state(TASK_INTERRUPTIBLE);
	if (!signal_pending(current))
		schedule();
	__set_current_state(TASK_RUNNING);
	return -ERESTARTNOHAND;
}

int do_signal(struct pt_regs *regs, sigset_t *oldset);
static void itimer_rearm(struct task_struct *tsk);

/* rt_sigsuspend(): wait with a temporary mask; the handler's frame saves the old one. */
__kfunc long sys_rt_sigsuspend(const sigset_t *unewset, size_t sigsetsize)
{
	struct pt_regs *regs = task_pt_regs(current);
	sigset_t saveset, newset;

	if (sigsetsize != sizeof(sigset_t))
		return -EINVAL;
	if (copy_from_user(&newset, unewset, sizeof(newset)))
		return -EFAULT;
	saveset = current->blocked;
	current->blocked = newset & ~SIG_KERNEL_ONLY_MASK;
	recalc_sigpending_tsk(current);
	regs->rax = -EINTR;
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!signal_pending(current))
			schedule();
		__set_current_state(TASK_RUNNING);
		if (do_signal(regs, &saveset))
			return -EINTR;
	}
}

/* ------------------------------------------------------------------ */
/* Delivery */

__kfunc int dequeue_signal(struct task_struct *tsk, sigset_t *mask, struct ksiginfo *info)
{
	sigset_t ready = tsk->pending.signal & ~*mask;
	int sig;

	if (!ready)
		return 0;
	sig = __builtin_ctzl(ready) + 1;
	tsk->pending.signal &= ~sigmask(sig);
	*info = tsk->pending.info[sig - 1];
	recalc_sigpending_tsk(tsk);
	if (sig == SIGALRM)
		itimer_rearm(tsk);
	return sig;
}

/* The next signal with a handler to run; default actions happen here. */
__kfunc int get_signal_to_deliver(struct ksiginfo *info, struct k_sigaction *return_ka, struct pt_regs *regs)
{
	(void)regs;
	for (;;) {
		struct k_sigaction *ka;
		int signr;

		local_irq_disable();
		signr = dequeue_signal(current, &current->blocked, info);
		local_irq_enable();
		if (!signr)
			return 0;
		ka = sig_action(current, signr);
		if (ka->sa.sa_handler == SIG_IGN)
			continue;
		if (ka->sa.sa_handler != SIG_DFL) {
			*return_ka = *ka;
			if (ka->sa.sa_flags & SA_RESETHAND)
				ka->sa.sa_handler = SIG_DFL;
			return signr;
		}
		/* stop signals are ignored: there is no job control here */
		if (sigmask(signr) & (SIG_KERNEL_IGNORE_MASK | SIG_KERNEL_STOP_MASK))
			continue;
		/* terminate (no core file is written: RLIMIT_CORE is 0) */
		do_exit(signr);
	}
}

/* The x86_64 signal frame (include/asm-x86_64/sigcontext.h, ucontext.h, siginfo.h). */
struct sigcontext {
	unsigned long r8, r9, r10, r11, r12, r13, r14, r15;
	unsigned long rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	unsigned short cs, gs, fs, __pad0;
	unsigned long err, trapno, oldmask, cr2;
	void *fpstate;
	unsigned long reserved1[8];
};

typedef struct {
	void *ss_sp;
	int ss_flags;
	size_t ss_size;
} stack_t;

struct ucontext {
	unsigned long uc_flags;
	struct ucontext *uc_link;
	stack_t uc_stack;
	struct sigcontext uc_mcontext;
	sigset_t uc_sigmask;
};

typedef struct {
	int si_signo, si_errno, si_code, _pad0;
	union {
		struct { int pid, uid; } kill;
		struct { int pid, uid, status; int _pad; long utime, stime; } sigchld;
		struct { unsigned long addr; } sigfault;
		int _pad[28];
	} _sifields;
} siginfo_t;

struct rt_sigframe {
	char *pretcode;
	struct ucontext uc;
	siginfo_t info;
};

_Static_assert(sizeof(struct sigcontext) == 256, "sigcontext");
_Static_assert(sizeof(siginfo_t) == 128, "siginfo");

#define FIX_EFLAGS	0x40dd5		/* AC OF DF TF SF ZF AF PF CF: what user mode may set */

static void copy_siginfo_to_user(siginfo_t *to, int sig, struct ksiginfo *info)
{
	memset(to, 0, sizeof(*to));
	to->si_signo = sig;
	to->si_code = info->si_code;
	if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP) {
		to->_sifields.sigfault.addr = info->si_addr;
	} else if (sig == SIGCHLD) {
		to->_sifields.sigchld.pid = info->si_pid;
		to->_sifields.sigchld.status = info->si_status;
	} else {
		to->_sifields.kill.pid = info->si_pid;
	}
}

static void setup_sigcontext(struct sigcontext *sc, struct pt_regs *regs, unsigned long mask, void *fp)
{
	struct task_struct *me = current;

	memset(sc, 0, sizeof(*sc));
	sc->r8 = regs->r8; sc->r9 = regs->r9; sc->r10 = regs->r10; sc->r11 = regs->r11;
	sc->r12 = regs->r12; sc->r13 = regs->r13; sc->r14 = regs->r14; sc->r15 = regs->r15;
	sc->rdi = regs->rdi; sc->rsi = regs->rsi; sc->rbp = regs->rbp; sc->rbx = regs->rbx;
	sc->rdx = regs->rdx; sc->rax = regs->rax; sc->rcx = regs->rcx; sc->rsp = regs->rsp;
	sc->rip = regs->rip;
	sc->eflags = regs->eflags;
	sc->cs = __USER_CS;
	sc->err = me->error_code;
	sc->trapno = me->trap_no;
	sc->oldmask = mask;
	sc->cr2 = me->cr2;
	sc->fpstate = fp;
}

/* The FPU state goes to the frame; the handler starts with a fresh one (finit). */
static void save_i387(struct task_struct *me, void *fp)
{
	unlazy_fpu(me);
	memcpy(fp, me->i387, sizeof(me->i387));
	memset(me->i387, 0, sizeof(me->i387));
	*(u16 *)&me->i387[0] = 0x37f;		/* fcw */
	*(u32 *)&me->i387[24] = 0x1f80;		/* mxcsr */
}

/* The alternate signal stack (sigaltstack): is sp on it? */
static int on_sig_stack(unsigned long sp)
{
	return sp - current->sas_ss_sp < current->sas_ss_size;
}

static int sas_ss_flags(unsigned long sp)
{
	return !current->sas_ss_size ? SS_DISABLE : on_sig_stack(sp) ? SS_ONSTACK : 0;
}

/* Where the frame goes: below the red zone, or at the top of the alternate stack. */
static unsigned long get_sigframe_sp(struct k_sigaction *ka, struct pt_regs *regs)
{
	unsigned long sp = regs->rsp - 128;

	if ((ka->sa.sa_flags & SA_ONSTACK) && sas_ss_flags(sp) == 0)
		sp = current->sas_ss_sp + current->sas_ss_size;
	return sp;
}

__kfunc long sys_sigaltstack(const void *uss_, void *uoss_)
{
	const stack_t *uss = uss_;
	stack_t *uoss = uoss_;
	unsigned long sp = task_pt_regs(current)->rsp;
	stack_t oss = { (void *)current->sas_ss_sp, sas_ss_flags(sp), current->sas_ss_size }, ss;

	if (uss) {
		if (copy_from_user(&ss, uss, sizeof(ss)))
			return -EFAULT;
		if (on_sig_stack(sp))
			return -EPERM;
		if (ss.ss_flags != 0 && ss.ss_flags != SS_DISABLE)
			return -EINVAL;
		if (ss.ss_flags == SS_DISABLE) {
			ss.ss_sp = NULL;
			ss.ss_size = 0;
		} else if (ss.ss_size < MINSIGSTKSZ) {
			return -ENOMEM;
		}
		current->sas_ss_sp = (unsigned long)ss.ss_sp;
		current->sas_ss_size = ss.ss_size;
	}
	if (uoss && copy_to_user(uoss, &oss, sizeof(oss)))
		return -EFAULT;
	return 0;
}

__kfunc int setup_rt_frame(int sig, struct k_sigaction *ka, struct ksiginfo *info, sigset_t *set,
			   struct pt_regs *regs)
{
	struct rt_sigframe frame;
	unsigned long sp = get_sigframe_sp(ka, regs);
	unsigned long fp = (sp - 512) & ~15UL;
	unsigned long uframe = ((fp - sizeof(frame)) & ~15UL) - 8;
	unsigned char fpstate[512];

	if (!(ka->sa.sa_flags & SA_RESTORER) || !access_ok(uframe, sp - uframe, 1))
		return -EFAULT;
	memset(&frame, 0, sizeof(frame));
	frame.pretcode = ka->sa.sa_restorer;
	if (ka->sa.sa_flags & SA_SIGINFO)
		copy_siginfo_to_user(&frame.info, sig, info);
	frame.uc.uc_stack.ss_sp = (void *)current->sas_ss_sp;
	frame.uc.uc_stack.ss_flags = sas_ss_flags(regs->rsp);
	frame.uc.uc_stack.ss_size = current->sas_ss_size;
	setup_sigcontext(&frame.uc.uc_mcontext, regs, *set, (void *)fp);
	frame.uc.uc_sigmask = *set;
	save_i387(current, fpstate);
	if (copy_to_user((void *)fp, fpstate, sizeof(fpstate)) ||
	    copy_to_user((void *)uframe, &frame, sizeof(frame)))
		return -EFAULT;

	regs->rdi = sig;
	regs->rax = 0;
	regs->rsi = uframe + offsetof(struct rt_sigframe, info);
	regs->rdx = uframe + offsetof(struct rt_sigframe, uc);
	regs->rip = (unsigned long)ka->sa.sa_handler;
	regs->rsp = uframe;
	regs->cs = __USER_CS;
	regs->ss = __USER_DS;
	regs->eflags &= ~(X86_EFLAGS_TF | X86_EFLAGS_DF);
	return 0;
}

__kfunc void handle_signal(int sig, struct ksiginfo *info, struct k_sigaction *ka, sigset_t *oldset,
			   struct pt_regs *regs)
{
	/* interrupted system calls: restart or -EINTR, as the handler's flags say */
	if ((long)regs->orig_rax >= 0) {
		switch (regs->rax) {
		case -ERESTART_RESTARTBLOCK:
		case -ERESTARTNOHAND:
			regs->rax = -EINTR;
			break;
		case -ERESTARTSYS:
			if (!(ka->sa.sa_flags & SA_RESTART)) {
				regs->rax = -EINTR;
				break;
			}
			/* fall through */
		case -ERESTARTNOINTR:
			regs->rax = regs->orig_rax;
			regs->rip -= 2;
			break;
		}
	}
	if (setup_rt_frame(sig, ka, info, oldset, regs)) {
		force_sigsegv(sig, current);
		return;
	}
	local_irq_disable();
	current->blocked |= ka->sa.sa_mask;
	if (!(ka->sa.sa_flags & SA_NODEFER))
		current->blocked |= sigmask(sig);
	current->blocked &= ~SIG_KERNEL_ONLY_MASK;
	recalc_sigpending_tsk(current);
	local_irq_enable();
}

/* Returns 1 when a handler was set up. */
__kfunc int do_signal(struct pt_regs *regs, sigset_t *oldset)
{
	struct k_sigaction ka;
	struct ksiginfo info;
	int signr;

	if (!user_mode(regs))
		return 1;
	if (!oldset)
		oldset = &current->blocked;
	signr = get_signal_to_deliver(&info, &ka, regs);
	if (signr > 0) {
		sigset_t old = *oldset;

		handle_signal(signr, &info, &ka, &old, regs);
		return 1;
	}
	/* no handler: restart the interrupted system call */
	if ((long)regs->orig_rax >= 0) {
		long res = regs->rax;

		if (res == -ERESTARTNOHAND || res == -ERESTARTSYS || res == -ERESTARTNOINTR) {
			regs->rax = regs->orig_rax;
			regs->rip -= 2;
		} else if (res == -ERESTART_RESTARTBLOCK) {
			regs->rax = -EINTR;
		}
	}
	return 0;
}

/* entry.S, on the way back to user mode with TIF_SIGPENDING set; the
 * return then goes through iretq, since every register may have changed. */
__kfunc void do_notify_resume(struct pt_regs *regs)
{
	if (signal_pending(current))
		do_signal(regs, NULL);
	set_ti_flag(current, TIF_IRET);
}

static int restore_sigcontext(struct pt_regs *regs, struct sigcontext *sc)
{
	struct task_struct *me = current;

	regs->r8 = sc->r8; regs->r9 = sc->r9; regs->r10 = sc->r10; regs->r11 = sc->r11;
	regs->r12 = sc->r12; regs->r13 = sc->r13; regs->r14 = sc->r14; regs->r15 = sc->r15;
	regs->rdi = sc->rdi; regs->rsi = sc->rsi; regs->rbp = sc->rbp; regs->rbx = sc->rbx;
	regs->rdx = sc->rdx; regs->rax = sc->rax; regs->rcx = sc->rcx; regs->rsp = sc->rsp;
	regs->rip = sc->rip;
	regs->eflags = (regs->eflags & ~FIX_EFLAGS) | (sc->eflags & FIX_EFLAGS);
	regs->orig_rax = -1;		/* no system call restarting */
	if (sc->fpstate) {
		unsigned char fpstate[512];

		if (copy_from_user(fpstate, sc->fpstate, sizeof(fpstate)))
			return -EFAULT;
		unlazy_fpu(me);		/* the handler's state is dropped */
		memcpy(me->i387, fpstate, sizeof(fpstate));
		*(u32 *)&me->i387[24] &= 0xffbf;	/* MXCSR: no reserved bits (fxrstor would #GP) */
	}
	return 0;
}

__kfunc long sys_rt_sigreturn(void)
{
	struct pt_regs *regs = task_pt_regs(current);
	struct rt_sigframe *frame = (struct rt_sigframe *)(regs->rsp - 8);
	struct rt_sigframe kframe;

	if (copy_from_user(&kframe, frame, sizeof(kframe)))
		goto badframe;
	local_irq_disable();
	current->blocked = kframe.uc.uc_sigmask & ~SIG_KERNEL_ONLY_MASK;
	recalc_sigpending_tsk(current);
	local_irq_enable();
	if (restore_sigcontext(regs, &kframe.uc.uc_mcontext))
		goto badframe;
	set_ti_flag(current, TIF_IRET);
	return regs->rax;
badframe:
	{
		struct ksiginfo segv = { .si_code = SI_KERNEL };

		force_sig_info(SIGSEGV, &segv, current);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Faults in user mode (arch/x86_64/mm/fault.c, kernel/traps.c) */

/* The signal a fault vector raises, and its si_code. */
static int trap_signal(unsigned long vector, unsigned long error, int *code)
{
	switch (vector) {
	case 0:
		*code = 1;		/* FPE_INTDIV */
		return SIGFPE;
	case 3:
		*code = SI_KERNEL;
		return SIGTRAP;
	case 6:
		*code = 2;		/* ILL_ILLOPN */
		return SIGILL;
	case 14:
		*code = error & 1 ? 2 : 1;	/* SEGV_ACCERR : SEGV_MAPERR */
		return SIGSEGV;
	case 16:
	case 19:
		*code = 0;
		return SIGFPE;
	default:
		*code = SI_KERNEL;
		return SIGSEGV;
	}
}

/* A fault: the process gets its signal; without a handler Linux's line is printed first. */
__kfunc void do_trap_signal(struct pt_regs *regs, unsigned long vector, unsigned long error,
			    unsigned long cr2)
{
	struct task_struct *me = current;
	struct ksiginfo info = { 0 };
	int sig = trap_signal(vector, error, &info.si_code);

	info.si_addr = vector == 14 ? cr2 : regs->rip;
	me->trap_no = vector;
	me->error_code = error;
	me->cr2 = vector == 14 ? cr2 : 0;
	if (unhandled_signal(me, sig)) {
		if (vector == 14)
			printk("%s[%d]: segfault at %lx ip %016lx sp %016lx error %lx\n", me->comm,
			       me->pid, cr2, regs->rip, regs->rsp, error);
		else if (vector == 6)
			printk("traps: %s[%d] trap invalid opcode ip:%lx sp:%lx error:0\n", me->comm,
			       me->pid, regs->rip, regs->rsp);
		else
			printk("traps: %s[%d] trap %lu ip:%lx sp:%lx error:%lx\n", me->comm, me->pid,
			       vector, regs->rip, regs->rsp, error);
	}
	force_sig_info(sig, &info, me);
}

/* exec: caught signals go back to their default action (flush_signal_handlers),
 * and the alternate signal stack is forgotten (it was in the old image). */
__kfunc void flush_signal_handlers(struct task_struct *t)
{
	t->sas_ss_sp = t->sas_ss_size = 0;
	for (int i = 0; i < _NSIG; i++) {
		struct k_sigaction *ka = &t->sighand->action[i];

		if (ka->sa.sa_handler != SIG_IGN)
			ka->sa.sa_handler = SIG_DFL;
		ka->sa.sa_flags = 0;
		ka->sa.sa_restorer = NULL;
		ka->sa.sa_mask = 0;
	}
}

/* fork: the child has the parent's actions and mask, and nothing pending. */
__kfunc void copy_sighand(struct task_struct *p)
{
	p->sighand = &p->sighand_store;
	if (current->sighand && current->sighand != &p->sighand_store)
		p->sighand_store = *current->sighand;
	memset(&p->pending, 0, sizeof(p->pending));
	clear_ti_flag(p, TIF_SIGPENDING);
	clear_ti_flag(p, TIF_IRET);
}

/* Process groups: setpgid(2), getpgid(2), getpgrp(2). */
__kfunc long sys_setpgid(int pid, int pgid)
{
	struct task_struct *p = pid ? find_task_by_pid(pid) : current;

	if (pgid < 0)
		return -EINVAL;
	if (!p || (p != current && p->parent != current))
		return -ESRCH;
	p->pgrp = pgid ? pgid : p->pid;
	return 0;
}

__kfunc long sys_getpgid(int pid)
{
	struct task_struct *p = pid ? find_task_by_pid(pid) : current;

	return p ? p->pgrp : -ESRCH;
}

__kfunc long sys_getpgrp(void)
{
	return current->pgrp;
}

/* ------------------------------------------------------------------ */
/*
 * ITIMER_REAL (kernel/itimer.c): alarm(2), setitimer(2), getitimer(2) on
 * the virtual clock.  A process's timer is found by its pid, so a timer
 * that fires after its process is gone does nothing.  The timer list
 * runs its functions under its lock, so an interval timer is armed again
 * when its SIGALRM is dequeued (as POSIX timers are, do_schedule_next_timer).
 */
#define ITIMER_REAL	0
#define NR_ITIMERS	16

struct real_itimer {
	struct timer_list timer;
	int pid;
	int rearm;
	unsigned long incr;		/* ticks; 0: one shot */
};

static struct real_itimer real_itimers[NR_ITIMERS];

struct k_itimerval {
	long interval_sec, interval_usec, value_sec, value_usec;
};

static unsigned long usecs_to_ticks(long sec, long usec)
{
	unsigned long ns = sec * 1000000000UL + usec * 1000UL, tick = boot_params.ns_per_tick ? boot_params.ns_per_tick : 1;

	return (ns + tick - 1) / tick;
}

static void ticks_to_timeval(unsigned long ticks, long *sec, long *usec)
{
	unsigned long ns = ticks * boot_params.ns_per_tick;

	*sec = ns / 1000000000UL;
	*usec = ns % 1000000000UL / 1000;
}

static struct real_itimer *find_itimer(int pid, int alloc)
{
	struct real_itimer *free = NULL;

	for (int i = 0; i < NR_ITIMERS; i++) {
		if (real_itimers[i].pid == pid)
			return &real_itimers[i];
		if (!free && !real_itimers[i].pid &&
		    (!real_itimers[i].timer.entry.next || list_empty(&real_itimers[i].timer.entry)))
			free = &real_itimers[i];
	}
	if (alloc && free) {
		init_timer(&free->timer);
		free->pid = pid;
		free->incr = 0;
		free->rearm = 0;
	}
	return alloc ? free : NULL;
}

/* The timer went off (in the tick, under the timer list's lock). */
__kfunc void it_real_fn(unsigned long data)
{
	struct real_itimer *it = (struct real_itimer *)data;
	struct task_struct *p = find_task_by_pid(it->pid);
	struct ksiginfo info = { .si_code = SI_KERNEL };

	if (!p || !is_user_task(p)) {
		it->pid = 0;
		return;
	}
	it->rearm = it->incr != 0;
	specific_send_sig_info(SIGALRM, &info, p);
}

/* dequeue_signal() of a SIGALRM: an interval timer goes on. */
static void itimer_rearm(struct task_struct *tsk)
{
	struct real_itimer *it = find_itimer(tsk->pid, 0);

	if (it && it->rearm && list_empty(&it->timer.entry)) {
		it->rearm = 0;
		it->timer.expires = jiffies + it->incr;
		add_timer(&it->timer);
	}
}

static void get_real_itimer(struct real_itimer *it, struct k_itimerval *v)
{
	memset(v, 0, sizeof(*v));
	if (!it)
		return;
	if (!list_empty(&it->timer.entry)) {
		long left = (long)(it->timer.expires - jiffies);

		ticks_to_timeval(left > 0 ? left : 1, &v->value_sec, &v->value_usec);
	}
	ticks_to_timeval(it->incr, &v->interval_sec, &v->interval_usec);
}

__kfunc long do_setitimer(int which, struct k_itimerval *value, struct k_itimerval *ovalue)
{
	struct real_itimer *it;
	unsigned long ticks;

	if (which != ITIMER_REAL)
		return -EINVAL;
	if (value->value_usec < 0 || value->value_usec >= 1000000 || value->interval_usec < 0 ||
	    value->interval_usec >= 1000000 || value->value_sec < 0 || value->interval_sec < 0)
		return -EINVAL;
	ticks = usecs_to_ticks(value->value_sec, value->value_usec);
	it = find_itimer(current->pid, ticks != 0);
	if (ovalue)
		get_real_itimer(it, ovalue);
	if (!it)
		return ticks ? -EAGAIN : 0;
	del_timer(&it->timer);
	it->rearm = 0;
	it->incr = usecs_to_ticks(value->interval_sec, value->interval_usec);
	if (ticks) {
		it->timer.function = it_real_fn;
		it->timer.data = (unsigned long)it;
		it->timer.expires = jiffies + ticks;
		add_timer(&it->timer);
	}
	return 0;
}

__kfunc long sys_setitimer(int which, const void *value, void *ovalue)
{
	struct k_itimerval v, ov;
	long ret;

	if (!value)
		memset(&v, 0, sizeof(v));
	else if (copy_from_user(&v, value, sizeof(v)))
		return -EFAULT;
	ret = do_setitimer(which, &v, &ov);
	if (!ret && ovalue && copy_to_user(ovalue, &ov, sizeof(ov)))
		return -EFAULT;
	return ret;
}

__kfunc long sys_getitimer(int which, void *value)
{
	struct k_itimerval v;

	if (which != ITIMER_REAL)
		return -EINVAL;
	get_real_itimer(find_itimer(current->pid, 0), &v);
	return copy_to_user(value, &v, sizeof(v));
}

/* alarm(2): seconds left of the previous one, rounded as Linux does. */
__kfunc long sys_alarm(unsigned int seconds)
{
	struct k_itimerval v = { 0, 0, seconds, 0 }, ov;

	do_setitimer(ITIMER_REAL, &v, &ov);
	if ((!ov.value_sec && ov.value_usec) || ov.value_usec >= 500000)
		ov.value_sec++;
	return ov.value_sec;
}

/*
 * signal.h - signal state of a task (include/linux/signal.h,
 * include/asm-x86_64/signal.h and siginfo.h shaped).  CONFIG_USERSPACE
 * builds only.  A sigset_t is one 64-bit word, as on x86_64 (_NSIG 64).
 */
#ifndef _MK_SIGNAL_H
#define _MK_SIGNAL_H

#include "kernel.h"

#define _NSIG		64
typedef unsigned long sigset_t;
#define sigmask(sig)	(1UL << ((sig) - 1))

#define SIGHUP		1
#define SIGINT		2
#define SIGQUIT		3
#define SIGILL		4
#define SIGTRAP		5
#define SIGABRT		6
#define SIGBUS		7
#define SIGFPE		8
#define SIGUSR1		10
#define SIGUSR2		12
#define SIGPIPE		13
#define SIGALRM		14
#define SIGTERM		15
#define SIGCONT		18
#define SIGSTOP		19
#define SIGTSTP		20
#define SIGTTIN		21
#define SIGTTOU		22
#define SIGURG		23
#define SIGXCPU		24
#define SIGXFSZ		25
#define SIGWINCH	28
#define SIGSYS		31

#define SIG_DFL		((void *)0)
#define SIG_IGN		((void *)1)

#define SA_NOCLDSTOP	0x00000001
#define SA_NOCLDWAIT	0x00000002
#define SA_SIGINFO	0x00000004
#define SA_RESTORER	0x04000000
#define SA_ONSTACK	0x08000000
#define SA_RESTART	0x10000000
#define SA_NODEFER	0x40000000
#define SA_RESETHAND	0x80000000

/* The x86_64 kernel's struct sigaction (the rt_sigaction(2) argument). */
struct sigaction {
	void *sa_handler;
	unsigned long sa_flags;
	void *sa_restorer;
	sigset_t sa_mask;
};

struct k_sigaction {
	struct sigaction sa;
};

struct sighand_struct {
	struct k_sigaction action[_NSIG];
};

/* What a pending signal carries: the parts of siginfo_t it fills. */
struct ksiginfo {
	int si_code;
	int si_pid;
	int si_status;
	unsigned long si_addr;
};

/* Pending signals: one of each number (real-time signals do not queue here). */
struct sigpending {
	sigset_t signal;
	struct ksiginfo info[_NSIG];
};

/* kernel/fork.c's vfork completion (linux/completion.h): one waiter, the parent */
struct task_struct;
struct completion {
	int done;
	struct task_struct *waiter;
};

#endif

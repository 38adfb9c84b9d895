/* signals.c - handlers, masks, kill, SIGPIPE, SIGCHLD, restarting, siglongjmp out of SIGSEGV */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_count, usr2_count, chld_count, alarm_hits;
static sigjmp_buf segv_env;
static volatile void *fault_addr;
static volatile int fault_code;

static void on_usr1(int sig) { (void)sig; usr1_count++; }
static volatile double handler_fp;

/* uses the FPU and SSE itself: the interrupted code's state must come back */
static void on_usr2(int sig)
{
	double y = sig;

	for (int i = 0; i < 10; i++)
		y = y * 1.0001 + 0.5;
	handler_fp += y;
	usr2_count++;
}
static void on_chld(int sig) { (void)sig; chld_count++; }

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_addr = si->si_addr;
	fault_code = si->si_code;
	siglongjmp(segv_env, 1);
}

static void report(const char *what, int status)
{
	if (WIFSIGNALED(status))
		printf("%s: killed by signal %d (%s)\n", what, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		printf("%s: exit code %d\n", what, WEXITSTATUS(status));
}

static void handler_counts_kills(void)
{
	int ack[2], go[2], status;
	sigset_t block, old;
	pid_t pid;
	char c;

	pipe(ack);
	pipe(go);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);	/* the child starts with it blocked */
	signal(SIGUSR1, on_usr1);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int seen = 0;

		write(go[1], "g", 1);
		while (seen < 5) {
			sigsuspend(&old);	/* SIGUSR1 is deliverable only in here */
			seen = usr1_count;
			write(ack[1], "a", 1);
		}
		_exit(usr1_count);
	}
	read(go[0], &c, 1);
	for (int i = 0; i < 5; i++) {
		kill(pid, SIGUSR1);
		read(ack[0], &c, 1);
	}
	waitpid(pid, &status, 0);
	report("child counting SIGUSR1", status);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(ack[0]); close(ack[1]); close(go[0]); close(go[1]);
}

static void sigpipe(void)
{
	int fds[2], status;
	pid_t pid;

	pipe(fds);
	close(fds[0]);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		write(fds[1], "x", 1);	/* no reader: SIGPIPE's default action */
		_exit(0);
	}
	waitpid(pid, &status, 0);
	report("writer to a pipe without readers", status);
	signal(SIGPIPE, SIG_IGN);
	{
		ssize_t n = write(fds[1], "x", 1);

		printf("with SIGPIPE ignored: write -> %zd (%s)\n", n, strerror(errno));
	}
	signal(SIGPIPE, SIG_DFL);
	close(fds[1]);
}

static void segv_handler(void)
{
	struct sigaction sa;
	volatile int *bad = (int *)16;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	for (int i = 0; i < 3; i++) {
		if (sigsetjmp(segv_env, 1) == 0) {
			*bad = i;
			printf("not reached\n");
		} else {
			printf("SIGSEGV %d caught: si_addr %p, si_code %d\n", i, (void *)fault_addr, fault_code);
		}
	}
	signal(SIGSEGV, SIG_DFL);
}

static void masks_and_pending(void)
{
	sigset_t set, pending;
	double x = 1.25;

	signal(SIGUSR2, on_usr2);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	raise(SIGUSR2);
	raise(SIGUSR2);		/* a second one of a pending signal is not queued */
	sigpending(&pending);
	printf("blocked SIGUSR2: pending %d, handled %d\n", sigismember(&pending, SIGUSR2), (int)usr2_count);
	x = x * 3.5;		/* FPU state across the handler */
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	printf("unblocked: handled %d, x = %.4f\n", (int)usr2_count, x * 2);
	signal(SIGUSR2, SIG_IGN);
	raise(SIGUSR2);
	printf("ignored: handled %d\n", (int)usr2_count);
}

static void default_actions(void)
{
	static const int sigs[] = { SIGTERM, SIGABRT, SIGUSR1, SIGKILL };
	int status;

	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		pid_t pid;

		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			signal(SIGUSR1, SIG_DFL);
			if (sigs[i] == SIGABRT)
				abort();
			kill(getpid(), sigs[i]);
			_exit(99);
		}
		waitpid(pid, &status, 0);
		report(strsignal(sigs[i]), status);
	}
	fflush(stdout);
	if (fork() == 0) {
		kill(getpid(), SIGCHLD);	/* ignored by default */
		kill(getpid(), SIGWINCH);
		_exit(7);
	}
	wait(&status);
	report("SIGCHLD and SIGWINCH to itself", status);
}

/* A child sends SIGUSR2 to its parent until the parent stops it (restart == 0) or
 * 20 times and then writes to the pipe the parent reads. */
static pid_t nagging_child(int fd, int restart)
{
	pid_t ppid = getpid(), pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		for (int i = 0; !restart || i < 20; i++)
			kill(ppid, SIGUSR2);
		write(fd, "restart", 7);
		_exit(0);
	}
	return pid;
}

static void sigchld_and_restart(void)
{
	struct sigaction sa;
	int fds[2], status;
	ssize_t n;
	char buf[8];
	pid_t pid;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_chld;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(3);
	waitpid(pid, &status, 0);
	report("SIGCHLD child", status);
	printf("SIGCHLD handled %d\n", (int)chld_count);
	signal(SIGCHLD, SIG_DFL);

	pipe(fds);
	sa.sa_handler = on_usr2;
	sa.sa_flags = 0;		/* no SA_RESTART: the read fails with EINTR */
	sigaction(SIGUSR2, &sa, NULL);
	pid = nagging_child(fds[1], 0);
	errno = 0;
	n = read(fds[0], buf, sizeof(buf));
	printf("read without SA_RESTART: %zd (%s)\n", n, strerror(errno));
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	report("nagging child", status);

	sa.sa_flags = SA_RESTART;	/* the read goes on until the data comes */
	sigaction(SIGUSR2, &sa, NULL);
	pid = nagging_child(fds[1], 1);
	n = read(fds[0], buf, sizeof(buf));
	printf("read with SA_RESTART: %zd bytes\n", n);
	waitpid(pid, &status, 0);
	close(fds[0]);
	close(fds[1]);
	signal(SIGUSR2, SIG_DFL);
}

static void process_group(void)
{
	int status, ready[2];
	pid_t pid;
	char c;

	setpgid(0, 0);
	printf("own group: %d\n", getpgrp() == getpid());
	signal(SIGUSR1, SIG_IGN);	/* the sender itself is in the group */
	pipe(ready);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		signal(SIGUSR1, SIG_DFL);
		write(ready[1], "r", 1);
		pause();
		_exit(0);
	}
	read(ready[0], &c, 1);
	printf("kill(0, SIGUSR1) -> %d\n", kill(0, SIGUSR1));
	waitpid(pid, &status, 0);
	report("group member", status);
	{
		int ret = kill(99999, SIGTERM);

		printf("kill of no such process: %d (%s)\n", ret, strerror(errno));
	}
	signal(SIGUSR1, SIG_DFL);
	close(ready[0]);
	close(ready[1]);
}

/* Signals arrive while the program computes in floating point. */
static void fpu_across_handlers(void)
{
	int fds[2], status;
	double acc = 0;
	pid_t pid;

	signal(SIGUSR2, on_usr2);
	pipe(fds);
	pid = nagging_child(fds[1], 0);
	for (int i = 1; i < 200000; i++)
		acc += 1.0 / ((double)i * i);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	printf("sum of 1/i^2 under signals: %.15f (handlers ran: %d)\n", acc, usr2_count > 0);
	signal(SIGUSR2, SIG_DFL);
	close(fds[0]);
	close(fds[1]);
}

static sigjmp_buf overflow_env;
static char altstack[65536];
static volatile int on_altstack, interrupted_flags;

static void on_overflow(int sig, siginfo_t *si, void *uc)
{
	char here;

	(void)sig;
	(void)si;
	on_altstack = &here >= altstack && &here < altstack + sizeof(altstack);
	interrupted_flags = ((ucontext_t *)uc)->uc_stack.ss_flags;	/* the interrupted code's: 0 */
	siglongjmp(overflow_env, 1);
}

static int recurse(int n)
{
	volatile char pad[512];

	pad[0] = (char)n;
	return recurse(n + 1) + pad[0];
}

/* A stack overflow is caught on an alternate signal stack (sigaltstack, SA_ONSTACK). */
static void stack_overflow(void)
{
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) }, old;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_overflow;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaltstack(&ss, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	if (sigsetjmp(overflow_env, 1) == 0)
		printf("not reached: %d\n", recurse(0));
	else
		printf("stack overflow caught: handler on the alternate stack %d, ss_flags %d\n", on_altstack,
		       interrupted_flags);
	sigaltstack(NULL, &old);
	printf("sigaltstack: size %zu, flags %d\n", old.ss_size, old.ss_flags);
	signal(SIGSEGV, SIG_DFL);
}

/* A parent that ignores SIGCHLD has no zombies: wait finds no child (ECHILD). */
static void sigchld_ignored(void)
{
	int ret;

	/* Children of the parts above that are still exiting would be reaped by this wait
	 * (a zombie made before SIG_IGN stays one): wait for them first, or the line races. */
	while (wait(NULL) > 0)
		;
	signal(SIGCHLD, SIG_IGN);
	for (int i = 0; i < 3; i++) {
		fflush(stdout);
		if (fork() == 0)
			_exit(i);
	}
	ret = wait(NULL);
	printf("SIGCHLD ignored: wait -> %d (%s)\n", ret, strerror(errno));
	signal(SIGCHLD, SIG_DFL);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	handler_counts_kills();
	sigpipe();
	segv_handler();
	masks_and_pending();
	default_actions();
	sigchld_and_restart();
	process_group();
	fpu_across_handlers();
	sigchld_ignored();
	stack_overflow();
	printf("done\n");
	return 0;
}

/*
 * noexec.c - code copied into data pages: the stack, the heap and an
 * mmap(PROT_READ|PROT_WRITE) region are not executable (a call there is
 * SIGSEGV), one mapped or mprotect-ed with PROT_EXEC is.
 *
 *   noexec stack|heap|mmap   call the copy: killed by SIGSEGV
 *   noexec handler           the same from the heap, caught: si_code, si_addr;
 *                            then a PROT_EXEC mapping mprotect-ed without it
 *   noexec fork              a child calls heap code; the parent sees its signal
 *   noexec exec              PROT_EXEC mappings run (mmap, mprotect, mremap)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static const unsigned char fortytwo[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3 };	/* mov $42,%eax; ret */
static sigjmp_buf back;
static void *volatile fault_addr;
static volatile int fault_code;

static int call(void *code, const char *where)
{
	memcpy(code, fortytwo, sizeof(fortytwo));
	printf("calling code %s at %p\n", where, code);
	fflush(stdout);
	return ((int (*)(void))code)();
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_addr = si->si_addr;
	fault_code = si->si_code;
	siglongjmp(back, 1);
}

static void *rw_mapping(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static int run_exec(void)
{
	void *x = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *p = rw_mapping(4096), *q;

	printf("PROT_EXEC mapping: %d\n", call(x, "in a PROT_EXEC mapping"));
	memcpy(p, fortytwo, sizeof(fortytwo));
	printf("mprotect(PROT_READ|PROT_WRITE|PROT_EXEC) = %d\n", mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
	printf("after mprotect: %d\n", ((int (*)(void))p)());
	q = mremap(p, 4096, 3 * 4096, MREMAP_MAYMOVE);
	memcpy((char *)q + 8192, fortytwo, sizeof(fortytwo));
	printf("moved and grown: %d %d\n", ((int (*)(void))q)(), ((int (*)(void))((char *)q + 8192))());
	printf("mprotect of an unaligned address = %d\n", mprotect((char *)q + 1, 4096, PROT_READ));
	return 0;
}

/* handler, second part: mprotect without PROT_EXEC takes the permission away again */
static int run_unprotect(void)
{
	void *x = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	printf("before mprotect: %d\n", call(x, "in a PROT_EXEC mapping"));
	printf("mprotect(PROT_READ|PROT_WRITE) = %d\n", mprotect(x, 4096, PROT_READ | PROT_WRITE));
	fault_addr = NULL;
	if (!sigsetjmp(back, 1))
		printf("after mprotect: %d\n", ((int (*)(void))x)());
	printf("after mprotect: SIGSEGV at the code: %s\n", fault_addr == x ? "yes" : "no");
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char stack_buf[64];
	const char *what = argc > 1 ? argv[1] : "";

	if (!strcmp(what, "stack"))
		return call(stack_buf, "on the stack");
	if (!strcmp(what, "heap"))
		return call(malloc(64), "on the heap");
	if (!strcmp(what, "mmap"))
		return call(rw_mapping(4096), "in a PROT_READ|PROT_WRITE mapping");
	if (!strcmp(what, "handler")) {
		struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO };
		void *code = malloc(64);

		sigaction(SIGSEGV, &sa, NULL);
		if (!sigsetjmp(back, 1))
			call(code, "on the heap");
		printf("SIGSEGV: si_code %d (SEGV_ACCERR is %d), si_addr is the code: %s\n",
		       fault_code, SEGV_ACCERR, fault_addr == code ? "yes" : "no");
		return run_unprotect();
	}
	if (!strcmp(what, "fork")) {
		int status;
		pid_t pid = fork();

		if (pid == 0)
			return call(malloc(64), "on the child's heap");
		waitpid(pid, &status, 0);
		printf("child: %s %d\n", WIFSIGNALED(status) ? "killed by signal" : "exit code",
		       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		return 0;
	}
	if (!strcmp(what, "exec"))
		return run_exec();
	fprintf(stderr, "usage: noexec stack|heap|mmap|handler|fork|exec\n");
	return 2;
}

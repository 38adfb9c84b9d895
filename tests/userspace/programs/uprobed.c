/* uprobed.c - functions to put uprobes and uretprobes on: recursion, a longjmp past
 * probed frames, a fork inside a probed function */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static jmp_buf env;

__attribute__((noinline)) int fib(int n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

__attribute__((noinline)) void deep(int n)
{
	if (n == 0)
		longjmp(env, 1);
	deep(n - 1);
}

__attribute__((noinline)) int jumper(void)
{
	if (!setjmp(env))
		deep(5);
	return 7;
}

__attribute__((noinline)) size_t greet(const char *who, int times)
{
	size_t n = 0;

	for (int i = 0; i < times; i++)
		n += printf("hello, %s\n", who);
	return n;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10;

	printf("fib(%d) = %d\n", n, fib(n));
	printf("jumper = %d\n", jumper());
	printf("greet = %zu\n", greet(argc > 2 ? argv[2] : "uprobes", 2));
	if (argc > 3 && !strcmp(argv[3], "fork")) {
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			printf("child: fib(6) = %d\n", fib(6));
			return 3;
		}
		waitpid(pid, &status, 0);
		printf("parent: child exited with %d\n", WEXITSTATUS(status));
	}
	return 0;
}

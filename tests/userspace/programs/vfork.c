/* vfork.c - a real vfork: the parent waits until the child execs or exits, and the child
 * runs on the parent's memory meanwhile; posix_spawn (clone with CLONE_VM|CLONE_VFORK).
 * Usage: vfork SELF; "vfork --child N" is what the children exec. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	volatile int shared = 1;
	int status;
	pid_t pid;

	if (argc > 2 && !strcmp(argv[1], "--child")) {
		printf("exec'd child %s running\n", argv[2]);
		return atoi(argv[2]);
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	pid = vfork();
	if (pid == 0) {
		shared = 42;		/* the parent's memory: it sees this */
		_exit(3);
	}
	waitpid(pid, &status, 0);
	printf("after vfork + _exit: shared = %d, status %d\n", shared, WEXITSTATUS(status));

	pid = vfork();
	if (pid == 0) {
		execl(argv[1], "vfork", "--child", "5", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	printf("exec child exited %d\n", WEXITSTATUS(status));

	{
		char *args[] = { "vfork", "--child", "7", NULL };

		if (posix_spawn(&pid, argv[1], NULL, NULL, args, environ))
			printf("posix_spawn failed\n");
		waitpid(pid, &status, 0);
		printf("posix_spawn child exited %d\n", WEXITSTATUS(status));
	}
	return 0;
}

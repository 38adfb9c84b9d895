/* forkexec.c - fork, execve, wait4; `forkexec PATH-TO-SELF` runs itself as a child */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int status;
	pid_t pid;

	if (argc > 2 && !strcmp(argv[2], "child")) {
		printf("child: exec'd with %d arguments\n", argc);
		return 5;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		printf("fork child running\n");
		fflush(stdout);
		_exit(3);
	}
	waitpid(pid, &status, 0);
	printf("first child exited with %d\n", WEXITSTATUS(status));
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char *args[] = { argv[0], argv[1], "child", NULL };
		char *env[] = { "X=1", NULL };

		execve(argv[1], args, env);
		perror("execve");
		_exit(127);
	}
	waitpid(pid, &status, 0);
	printf("exec child exited with %d\n", WEXITSTATUS(status));
	return 0;
}

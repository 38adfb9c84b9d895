/* pipe.c - pipe, fork, dup2, and a transfer bigger than the pipe's buffer */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	char buf[512];
	unsigned long total = 0, sum = 0;
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	if (pipe(fds)) {
		perror("pipe");
		return 1;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 1);		/* stdout is the pipe now */
		close(fds[1]);
		for (int i = 0; i < 2000; i++)
			printf("line %04d of the child's output\n", i);
		return 0;
	}
	close(fds[1]);
	while ((n = read(fds[0], buf, sizeof(buf))) > 0) {
		total += n;
		for (ssize_t i = 0; i < n; i++)
			sum = sum * 31 + (unsigned char)buf[i];
	}
	close(fds[0]);
	waitpid(pid, &status, 0);
	printf("parent read %lu bytes (checksum %lx) until EOF; child exited %d\n", total, sum, WEXITSTATUS(status));
	return 0;
}

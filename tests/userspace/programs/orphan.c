/* orphan.c - a child that outlives its parent, and a zombie left unreaped: init adopts
 * both and reaps them; the orphan goes on writing after its parent is gone. */
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
	pid_t parent = getpid();

	setvbuf(stdout, NULL, _IONBF, 0);
	if (fork() == 0) {
		struct timespec tick = { 0, 1000000 };

		if (fork() == 0)
			_exit(0);		/* never waited for: a zombie until init adopts it */
		while (getppid() == parent)
			nanosleep(&tick, NULL);
		printf("orphan: my parent is gone, I go on\n");
		return 0;
	}
	printf("parent: exiting before my child\n");
	return 0;
}

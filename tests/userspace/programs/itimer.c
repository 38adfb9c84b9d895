/* itimer.c - ITIMER_REAL on the virtual clock: a one-shot timer, an interval timer counted
 * by its handler, what getitimer and alarm report, and SIGALRM's default action. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

int main(void)
{
	struct itimerval it = { { 0, 0 }, { 0, 20000 } }, old;
	sigset_t block, none;
	int status;

	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGALRM, on_alarm);
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigprocmask(SIG_BLOCK, &block, &none);
	setitimer(ITIMER_REAL, &it, NULL);	/* 20 ms, once */
	sigsuspend(&none);
	printf("one shot: %d alarm\n", (int)alarms);

	it.it_interval.tv_usec = 5000;		/* then every 5 ms */
	it.it_value.tv_usec = 5000;
	setitimer(ITIMER_REAL, &it, NULL);
	while (alarms < 4)
		sigsuspend(&none);
	getitimer(ITIMER_REAL, &old);
	printf("interval: %d alarms, interval %ld us\n", (int)alarms, (long)old.it_interval.tv_usec);
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	getitimer(ITIMER_REAL, &old);
	printf("disarmed: %ld s %ld us left\n", (long)old.it_value.tv_sec, (long)old.it_value.tv_usec);

	{
		unsigned int first = alarm(5), left = alarm(0);

		printf("alarm(5) -> %u, then alarm(0) -> %u\n", first, left);
	}
	if (fork() == 0) {
		struct itimerval quick = { { 0, 0 }, { 0, 1000 } };

		signal(SIGALRM, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setitimer(ITIMER_REAL, &quick, NULL);
		for (;;)
			pause();
	}
	wait(&status);
	printf("child: killed by signal %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return 0;
}

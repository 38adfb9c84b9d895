/* threads.c - pthread_create, which the kernel refuses (no threads) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static void *work(void *arg)
{
	return arg;
}

int main(void)
{
	pthread_t t;
	int err = pthread_create(&t, NULL, work, NULL);

	if (err)
		printf("pthread_create failed: %s\n", strerror(err));
	else
		pthread_join(t, NULL);
	printf("main goes on\n");
	return 0;
}

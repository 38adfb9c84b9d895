/* nosys.c - a system call the kernel does not have, twice */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	long r = syscall(999);

	printf("syscall(999) -> %ld (%s)\n", r, strerror(errno));
	r = syscall(999);
	printf("again -> %ld\n", r);
	return 0;
}

/* segv.c - a write through a NULL pointer */
#include <stdio.h>

int main(void)
{
	volatile int *p = 0;

	printf("about to fault\n");
	fflush(stdout);
	*p = 1;
	return 0;
}

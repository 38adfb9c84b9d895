/* hog.c - allocates 1 MiB blocks until malloc fails */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	int n = 0;
	char *p;

	while ((p = malloc(1 << 20)) != NULL) {
		memset(p, 1, 1 << 20);
		n++;
	}
	printf("malloc failed after %d MiB\n", n);
	return 0;
}

/* realloc.c - a large block grown by realloc (glibc moves it with mremap) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	size_t size = 256 << 10;
	unsigned char *p = malloc(size);
	unsigned long sum = 0;

	memset(p, 7, size);
	for (int i = 0; i < 4; i++) {
		p = realloc(p, size * 2);
		memset(p + size, i, size);
		size *= 2;
	}
	for (size_t i = 0; i < size; i += 512)
		sum += p[i];
	printf("grew to %zu bytes, sum %lu, first %d\n", size, sum, p[0]);
	free(p);
	return 0;
}

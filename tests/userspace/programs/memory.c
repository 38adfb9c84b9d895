/* memory.c - malloc small and large, strings, qsort, setjmp/longjmp */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jmp_buf env;

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void deep(int n)
{
	if (n == 0)
		longjmp(env, 42);
	deep(n - 1);
}

int main(void)
{
	char *words[] = { "pear", "apple", "fig", "kiwi", "banana" };
	unsigned long sum = 0;
	char *small[100], *big;
	int r;

	for (int i = 0; i < 100; i++) {
		small[i] = malloc(16 + i);
		snprintf(small[i], 16 + i, "block %d", i);
	}
	big = malloc(1 << 20);			/* mmap'd by both libcs */
	memset(big, 0x5a, 1 << 20);
	for (int i = 0; i < (1 << 20); i += 4096)
		sum += (unsigned char)big[i];
	printf("%s .. %s, big sum %lu\n", small[0], small[99], sum);
	for (int i = 0; i < 100; i++)
		free(small[i]);
	free(big);
	qsort(words, 5, sizeof(words[0]), cmp);
	for (int i = 0; i < 5; i++)
		printf("%s%s", words[i], i < 4 ? " " : "\n");
	printf("strlen %zu, strstr %s, toupper via %%c: %c\n", strlen("kprobes"), strstr("jprobes and kretprobes", "kret"), 'k' - 32);
	r = setjmp(env);
	if (!r)
		deep(50);
	printf("longjmp back with %d\n", r);
	return 0;
}

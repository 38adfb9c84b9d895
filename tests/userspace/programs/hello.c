/* hello.c - stdio and arguments */
#include <stdio.h>

int main(int argc, char **argv)
{
	printf("hello, world (%d arguments)\n", argc);
	for (int i = 1; i < argc; i++)
		printf("argv[%d] = %s\n", i, argv[i]);
	return 0;
}

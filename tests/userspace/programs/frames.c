/* frames.c - nested calls down to a `syscall` made in the program's own code (no libc
 * function in between): what `bt` walks in a system call, by CFI or by frame pointers */
static __attribute__((noinline, noclone)) long raw_write(int fd, const char *s, unsigned long n)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "0"(1L), "D"((long)fd), "S"(s), "d"(n) : "rcx", "r11", "memory");
	return ret;
}

__attribute__((noinline)) long inner(const char *s)
{
	return raw_write(1, s, 7) + 1;
}

__attribute__((noinline)) long middle(const char *s)
{
	return inner(s) + 1;
}

int main(void)
{
	return middle("frames\n") == 9 ? 0 : 1;
}

/*
 * hello.c - a minimal freestanding guest program for kprobe-shell.
 *
 * Build (exactly):
 *   gcc -O2 -ffreestanding -nostdlib -static -no-pie -o hello.elf hello.c
 *
 * It writes to the serial port 0x3f8 with outb and ends with "cli; hlt".
 * It never enables interrupts, so it needs no IDT.  The machine runs it
 * as a single task named after the image ("hello").  Its functions are
 * ordinary symbols, so they can be probed: putstr, putnum, fib, _start.
 */

static inline void outb(unsigned char value, unsigned short port)
{
	__asm__ __volatile__("outb %0, %1" : : "a"(value), "Nd"(port));
}

__attribute__((noinline)) void putstr(const char *s)
{
	while (*s)
		outb((unsigned char)*s++, 0x3f8);
}

__attribute__((noinline)) void putnum(unsigned long n)
{
	if (n >= 10)
		putnum(n / 10);
	outb((unsigned char)('0' + n % 10), 0x3f8);
}

__attribute__((noinline)) unsigned long fib(unsigned long n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

void _start(void)
{
	putstr("hello from a user image\n");
	putstr("fib(10) = ");
	putnum(fib(10));
	putstr("\n");
	__asm__ __volatile__("cli; hlt");
	for (;;)
		;
}

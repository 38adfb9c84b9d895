/*
 * wc.c - a small Linux program for the "your own program" lesson.
 *
 * Build (exactly; scripts/build_guest.sh does):
 *   gcc -O2 -ffreestanding -static -nostdlib -fno-pie -no-pie -fno-asynchronous-unwind-tables \
 *       -fcf-protection=none -fno-stack-protector -Wl,--build-id=none -o wc wc.c
 *
 * An ordinary static x86_64 Linux executable, without a C library so that
 * the binary is small and builds to the same bytes everywhere: it makes its
 * system calls itself.  It counts the lines, words and bytes of stdin and of
 * each file named on its command line, as wc does, and exits 0 (1 if a
 * file cannot be opened).  It runs the same natively and in the minikernel.
 */
#define SYS_read	0
#define SYS_write	1
#define SYS_open	2
#define SYS_close	3
#define SYS_exit_group	231

static long syscall3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ __volatile__("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

/* One output line, written with one write(2) */
static char line[128];
static unsigned long line_len;

static void put(const char *s)
{
	while (*s && line_len < sizeof(line))
		line[line_len++] = *s++;
}

static void put_number(unsigned long n)
{
	char buf[24], *p = buf + sizeof(buf) - 1;

	*p = '\0';
	do
		*--p = '0' + n % 10;
	while (n /= 10);
	put(p);
}

static void flush_line(void)
{
	syscall3(SYS_write, 1, (long)line, line_len);
	line_len = 0;
}

/* Count one file descriptor's lines, words and bytes, then print them. */
static void count(int fd, const char *name)
{
	unsigned long lines = 0, words = 0, bytes = 0;
	int in_word = 0;
	char buf[64];
	long n;

	while ((n = syscall3(SYS_read, fd, (long)buf, sizeof(buf))) > 0) {
		for (long i = 0; i < n; i++) {
			char c = buf[i];
			int space = c == ' ' || c == '\n' || c == '\t';

			lines += c == '\n';
			words += !space && !in_word;
			in_word = !space;
		}
		bytes += n;
	}
	put_number(lines);
	put(" ");
	put_number(words);
	put(" ");
	put_number(bytes);
	put(" ");
	put(name);
	put("\n");
	flush_line();
}

static int wc_main(int argc, char **argv)
{
	int status = 0;

	count(0, "-");
	for (int i = 1; i < argc; i++) {
		long fd = syscall3(SYS_open, (long)argv[i], 0, 0);

		if (fd < 0) {
			put("wc: cannot open ");
			put(argv[i]);
			put("\n");
			flush_line();
			status = 1;
			continue;
		}
		count(fd, argv[i]);
		syscall3(SYS_close, fd, 0, 0);
	}
	return status;
}

/* The kernel starts a program with rsp at argc, then argv[]. */
__attribute__((used)) void start_c(long *sp)
{
	syscall3(SYS_exit_group, wc_main((int)sp[0], (char **)(sp + 1)), 0, 0);
}

__asm__(".globl _start\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movq %rsp, %rdi\n"
	"	andq $-16, %rsp\n"
	"	call start_c\n"
	"	hlt\n");

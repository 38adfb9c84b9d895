/*
 * printk.c - vsnprintf and printk on the 16550 serial console at 0x3f8.
 *
 * Supported conversions: %d %i %u %x %X %o %c %s %p %% with the flags
 * '-', '0', '#', a field width (digits or '*'), a precision for strings
 * and the length modifiers h, hh, l, ll, z.
 */
#include "sched.h"

static spinlock_t logbuf_lock = SPIN_LOCK_UNLOCKED;
unsigned long printk_lines;

#define ZEROPAD	1
#define SIGN	2
#define LEFT	4
#define SPECIAL	8
#define LARGE	16

struct outbuf {
	char *buf;
	size_t size;
	size_t pos;
};

static void put(struct outbuf *o, char c)
{
	if (o->pos + 1 < o->size)
		o->buf[o->pos] = c;
	o->pos++;
}

static void number(struct outbuf *o, unsigned long num, int base, int width,
		   int flags)
{
	const char *digits = (flags & LARGE) ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	char sign = 0;
	int i = 0, len;

	if ((flags & SIGN) && (long)num < 0) {
		sign = '-';
		num = -(long)num;
	}
	do {
		tmp[i++] = digits[num % base];
		num /= base;
	} while (num);
	len = i + (sign ? 1 : 0) + ((flags & SPECIAL) && base == 16 ? 2 : 0);
	if (!(flags & (LEFT | ZEROPAD)))
		for (; width > len; width--)
			put(o, ' ');
	if (sign)
		put(o, sign);
	if ((flags & SPECIAL) && base == 16) {
		put(o, '0');
		put(o, (flags & LARGE) ? 'X' : 'x');
	}
	if ((flags & ZEROPAD) && !(flags & LEFT))
		for (; width > len; width--)
			put(o, '0');
	while (i > 0)
		put(o, tmp[--i]);
	for (; width > len; width--)
		put(o, ' ');
}

__kfunc int vsnprintf(char *buf, size_t size, const char *fmt, __builtin_va_list args)
{
	struct outbuf o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		int flags = 0, width = -1, precision = -1, qual = 0, base = 10;
		unsigned long num;

		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		/* flags */
		for (;;) {
			fmt++;
			if (*fmt == '-')
				flags |= LEFT;
			else if (*fmt == '0')
				flags |= ZEROPAD;
			else if (*fmt == '#')
				flags |= SPECIAL;
			else if (*fmt == ' ' || *fmt == '+')
				;
			else
				break;
		}
		/* width */
		if (*fmt == '*') {
			width = __builtin_va_arg(args, int);
			if (width < 0) {
				width = -width;
				flags |= LEFT;
			}
			fmt++;
		} else if (*fmt >= '0' && *fmt <= '9') {
			width = 0;
			while (*fmt >= '0' && *fmt <= '9')
				width = width * 10 + (*fmt++ - '0');
		}
		/* precision (strings only) */
		if (*fmt == '.') {
			fmt++;
			precision = 0;
			if (*fmt == '*') {
				precision = __builtin_va_arg(args, int);
				fmt++;
			} else {
				while (*fmt >= '0' && *fmt <= '9')
					precision = precision * 10 + (*fmt++ - '0');
			}
		}
		/* length */
		if (*fmt == 'h') {
			qual = 'h';
			fmt++;
			if (*fmt == 'h') {
				qual = 'H';
				fmt++;
			}
		} else if (*fmt == 'l') {
			qual = 'l';
			fmt++;
			if (*fmt == 'l')
				fmt++;
		} else if (*fmt == 'z' || *fmt == 'L') {
			qual = 'l';
			fmt++;
		}

		switch (*fmt) {
		case 'c':
			if (!(flags & LEFT))
				while (--width > 0)
					put(&o, ' ');
			put(&o, (char)__builtin_va_arg(args, int));
			while (--width > 0)
				put(&o, ' ');
			continue;
		case 's': {
			const char *s = __builtin_va_arg(args, const char *);
			int len;

			if (!s)
				s = "(null)";
			len = (int)strnlen(s, precision < 0 ? (size_t)-1 : (size_t)precision);
			if (!(flags & LEFT))
				for (; width > len; width--)
					put(&o, ' ');
			for (int i = 0; i < len; i++)
				put(&o, s[i]);
			for (; width > len; width--)
				put(&o, ' ');
			continue;
		}
		case 'p':
			if (width == -1) {
				width = 2 * sizeof(void *);
				flags |= ZEROPAD;
			}
			number(&o, (unsigned long)__builtin_va_arg(args, void *), 16,
			       width, flags);
			continue;
		case '%':
			put(&o, '%');
			continue;
		case 'o':
			base = 8;
			break;
		case 'X':
			flags |= LARGE;
			/* fall through */
		case 'x':
			base = 16;
			break;
		case 'd':
		case 'i':
			flags |= SIGN;
			break;
		case 'u':
			break;
		default:
			put(&o, '%');
			if (*fmt)
				put(&o, *fmt);
			else
				fmt--;
			continue;
		}
		if (qual == 'l')
			num = __builtin_va_arg(args, unsigned long);
		else if (flags & SIGN) {
			int v = __builtin_va_arg(args, int);
			if (qual == 'h')
				v = (short)v;
			else if (qual == 'H')
				v = (signed char)v;
			num = (long)v;
		} else {
			unsigned int v = __builtin_va_arg(args, unsigned int);
			if (qual == 'h')
				v = (unsigned short)v;
			else if (qual == 'H')
				v = (unsigned char)v;
			num = v;
		}
		number(&o, num, base, width, flags);
	}
	if (o.size)
		o.buf[o.pos < o.size ? o.pos : o.size - 1] = '\0';
	return (int)o.pos;
}

__kfunc int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	__builtin_va_list args;
	int n;

	__builtin_va_start(args, fmt);
	n = vsnprintf(buf, size, fmt, args);
	__builtin_va_end(args);
	return n;
}

/* drivers/serial/8250_early.c: wait for THRE, then write the byte */
__kfunc void early_serial_write(const char *s, size_t n)
{
	while (n--) {
		unsigned int timeout = 0xffff;

		while (!(inb(SERIAL_LSR) & LSR_THRE) && --timeout)
			cpu_relax();
		outb((u8)*s++, SERIAL_PORT);
	}
}

/*
 * printk: format into a local buffer, then emit the whole message with
 * interrupts off under logbuf_lock, so messages from different tasks
 * never interleave within a line.
 */
__kfunc int printk(const char *fmt, ...)
{
	char buf[256];
	__builtin_va_list args;
	unsigned long flags;
	int n;

	__builtin_va_start(args, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, args);
	__builtin_va_end(args);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;

	spin_lock_irqsave(&logbuf_lock, flags);
	early_serial_write(buf, n);
	printk_lines++;
	spin_unlock_irqrestore(&logbuf_lock, flags);
	return n;
}

#ifdef CONFIG_USERSPACE
/* A program's write(2) to the console: its bytes as they are, under the
 * same lock as printk, so they never land inside a kernel message. */
__kfunc void tty_write_bytes(const char *s, size_t n)
{
	unsigned long flags;

	spin_lock_irqsave(&logbuf_lock, flags);
	early_serial_write(s, n);
	spin_unlock_irqrestore(&logbuf_lock, flags);
}
#endif

__kfunc void machine_halt(void)
{
#ifdef CONFIG_SMP
	/* The other CPUs park (cli; hlt) from their idle loops; the machine
	 * powers off when every CPU has. */
	system_halting = 1;
#endif
	for (;;)
		__asm__ __volatile__("cli ; hlt" : : : "memory");
}

__kfunc void panic(const char *fmt, ...)
{
	char buf[200];
	__builtin_va_list args;

	local_irq_disable();
	__builtin_va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	__builtin_va_end(args);
	printk("Kernel panic - not syncing: %s\n", buf);
	machine_halt();
}

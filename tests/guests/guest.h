/*
 * Minimal run-time for the test guests: no libc, a serial console on COM1, and an
 * entry point that calls main() and halts with interrupts off (the machine then stops
 * with StopReason.HALTED).
 *
 * Built with: gcc -O2 -ffreestanding -nostdlib -static -no-pie -fno-pic
 *             -fcf-protection=none -mgeneral-regs-only   (see guestbuild.py)
 */
#ifndef TEST_GUEST_H
#define TEST_GUEST_H

typedef unsigned long u64;
typedef long s64;
typedef unsigned int u32;
typedef unsigned char u8;

int main(void);

/*
 * A function written in assembly, with symbol type and size so the image's symbol table
 * knows its extent, and PROBE(label): a global label on the instruction a test probes.
 */
#define ASM_FUNC(name, body)                                                        \
    __asm__(".text\n.globl " #name "\n.type " #name ", @function\n.p2align 4\n"     \
            #name ":\n" body "\n.size " #name ", .-" #name "\n")
#define PROBE(label) ".globl " #label "\n" #label ":\n"

/* The machine starts at the ELF entry with rsp 16-byte aligned and IF = 0. */
__asm__(
    "    .text\n"
    "    .globl _start\n"
    "    .type _start, @function\n"
    "_start:\n"
    "    call main\n"
    "    mov %rax, exit_code(%rip)\n"
    "    cli\n"
    "    hlt\n"
    "    .size _start, .-_start\n");

volatile u64 exit_code;

static inline void outb(u8 v, unsigned short port)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static __attribute__((noinline)) void putc_(char c)
{
    outb((u8)c, 0x3f8);
}

static __attribute__((noinline)) void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}

static __attribute__((noinline)) void put_hex(u64 v)
{
    char buf[19];
    int i = 18;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    puts_(buf + i);
}

static __attribute__((noinline)) void put_dec(s64 v)
{
    char buf[24];
    int i = 23;
    u64 u = v < 0 ? -(u64)v : (u64)v;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[--i] = '-';
    puts_(buf + i);
}

/* "name=0x...\n" */
static __attribute__((noinline)) void show(const char *name, u64 v)
{
    puts_(name);
    putc_('=');
    put_hex(v);
    putc_('\n');
}

#endif

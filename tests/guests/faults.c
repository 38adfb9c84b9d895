/*
 * Faults, chosen by `fault_kind` (the test writes it before running).
 *  0 none   1 unmapped read   2 unmapped write   3 execute unmapped   4 ud2
 *  5 divide by zero   6 stack overflow   7 write to read-only data
 *  8 hlt with interrupts on (the machine has no timer vector: it halts)
 *  9 never halts: a loop with interrupts off (only a budget or Ctrl-C stops it)
 * 10 triple fault: a timer gate in the IDT, but the stack pointer in unmapped memory,
 *    so the CPU cannot push the interrupt frame (#PF -> #DF -> shutdown)
 * 11 a timer gate whose handler is in unmapped memory
 */
#include "guest.h"

volatile u64 fault_kind;
u64 *read_ptr = (u64 *)0x10;
u64 good_value = 0xfeedface;
const u64 ro_value = 7;
u64 *write_ptr = (u64 *)0x18;

u64 load_from(u64 *p);
ASM_FUNC(load_from,
    "    nop\n"
    PROBE(p_fault) "    mov (%rdi), %rax\n"
    "    ret\n");

void store_to(u64 *p, u64 v);
ASM_FUNC(store_to,
    PROBE(p_store) "    mov %rsi, (%rdi)\n"
    "    ret\n");

void do_ud2(void);
ASM_FUNC(do_ud2,
    "    nop\n"
    PROBE(p_ud2) "    ud2\n"
    "    ret\n");

u64 do_div(u64 a, u64 b);
ASM_FUNC(do_div,
    "    mov %rdi, %rax\n"
    "    xor %edx, %edx\n"
    PROBE(p_div) "    div %rsi\n"
    "    ret\n");

/* An IDT with a timer gate (vector 0x20), as a kernel would set one up. */
struct gate {
    unsigned short lo, sel;
    unsigned char ist, attr;
    unsigned short mid;
    unsigned int hi, zero;
} __attribute__((packed));
static struct gate idt[0x21] __attribute__((aligned(16)));

void timer_isr(void);
ASM_FUNC(timer_isr, "    iretq\n");

static void set_timer_gate(u64 handler)
{
    struct gate *g = &idt[0x20];
    g->lo = handler & 0xffff;
    g->sel = 8;
    g->ist = 0;
    g->attr = 0x8e; /* present, interrupt gate */
    g->mid = (handler >> 16) & 0xffff;
    g->hi = handler >> 32;
    g->zero = 0;
    struct { unsigned short limit; u64 base; } __attribute__((packed)) d = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(d));
}

void spin(void);
ASM_FUNC(spin,
    PROBE(p_spin) "    jmp p_spin\n");

void overflow(void);
ASM_FUNC(overflow,
    "    push %rdi\n"
    "    call overflow\n"
    "    ret\n");

int main(void)
{
    puts_("faults start\n");
    show("good", load_from(&good_value));
    switch (fault_kind) {
    case 1:
        show("loaded", load_from(read_ptr));
        break;
    case 2:
        store_to(write_ptr, 5);
        break;
    case 3:
        ((void (*)(void))0x20000000UL)();
        break;
    case 4:
        do_ud2();
        break;
    case 5:
        show("q", do_div(100, fault_kind - 5));
        break;
    case 6:
        overflow();
        break;
    case 7:
        store_to((u64 *)&ro_value, 9);
        break;
    case 8:
        __asm__ volatile("sti; hlt");
        break;
    case 9:
        spin();
        break;
    case 10:
        set_timer_gate((u64)timer_isr);
        __asm__ volatile("mov $0x30000000, %%rsp; sti; jmp spin" : : : "memory");
        break;
    case 11:
        set_timer_gate(0x30000000UL);
        __asm__ volatile("sti; jmp spin" : : : "memory");
        break;
    }
    puts_("faults end\n");
    return 0;
}

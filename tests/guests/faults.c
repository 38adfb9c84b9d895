/*
 * Faults, chosen by `fault_kind` (the test writes it before running).
 *  0 none   1 unmapped read   2 unmapped write   3 execute unmapped   4 ud2
 *  5 divide by zero   6 stack overflow   7 write to read-only data
 *  8 hlt with interrupts on (the machine has no timer vector: it halts)
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
    }
    puts_("faults end\n");
    return 0;
}

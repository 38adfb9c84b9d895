/*
 * A bad memory access of each kind, chosen by `access_kind` (the test writes it before
 * running):
 *  1 read unmapped   2 write unmapped   3 execute unmapped   4 write read-only data
 *  5 execute read-only data   6 execute writable data   7 execute the stack
 */
#include "guest.h"

volatile u64 access_kind;
const u64 ro_word = 7;

/* A `ret` in the read-only data and one in the writable data: neither is executable. */
__asm__(".section .rodata\n.globl ro_code\nro_code:\n    ret\n.previous\n");
__asm__(".data\n.globl rw_code\nrw_code:\n    ret\n.previous\n");
void ro_code(void);
void rw_code(void);

int main(void)
{
    volatile unsigned char on_stack[16] = { 0xc3 };

    puts_("bad_access start\n");
    switch (access_kind) {
    case 1:
        exit_code = *(volatile u64 *)0x10;
        break;
    case 2:
        *(volatile u64 *)0x18 = 5;
        break;
    case 3:
        ((void (*)(void))0x20000000UL)();
        break;
    case 4:
        *(volatile u64 *)&ro_word = 9;
        break;
    case 5:
        ro_code();
        break;
    case 6:
        rw_code();
        break;
    case 7:
        ((void (*)(void))on_stack)();
        break;
    }
    puts_("bad_access end\n");
    return 0;
}

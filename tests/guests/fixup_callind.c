/* Fix-up class "indirect call" (ff /2): the return address is fixed, rip is absolute. */
#include "guest.h"

u64 last_ret[16];
u64 nret;
u64 out[16];

#define CALLEE(n, k)                                                    \
    ASM_FUNC(f##n,                                                      \
        "    mov (%rsp), %rax\n"                                        \
        "    mov nret(%rip), %rdx\n"                                    \
        "    mov %rax, last_ret(,%rdx,8)\n"                             \
        "    incq nret(%rip)\n"                                         \
        "    lea " #k "(%rdi), %rax\n"                                  \
        "    ret\n")
CALLEE(0, 100);
CALLEE(1, 200);
CALLEE(2, 300);
CALLEE(3, 400);
u64 f0(u64), f1(u64), f2(u64), f3(u64);

u64 (*ftab[4])(u64) = {f0, f1, f2, f3};
u64 (*fptr)(u64) = f2;

u64 call_reg(u64 x);
ASM_FUNC(call_reg,
    "    lea f0(%rip), %rax\n"
    "    test $1, %dil\n"
    "    jz 1f\n"
    "    lea f1(%rip), %rax\n"
    "1:\n"
    PROBE(p_call_reg) "    call *%rax\n"
    "    ret\n");

u64 call_table(u64 x);
ASM_FUNC(call_table,
    "    and $3, %rdi\n"
    PROBE(p_call_table) "    call *ftab(,%rdi,8)\n"
    "    ret\n");

u64 call_riprel(u64 x);
ASM_FUNC(call_riprel,
    PROBE(p_call_riprel) "    call *fptr(%rip)\n"
    "    ret\n");

int main(void)
{
    int n = 0;
    for (u64 i = 0; i < 4; i++) {
        out[n++] = call_reg(i);
        out[n++] = call_table(i);
        out[n++] = call_riprel(i);
        fptr = ftab[(i + 1) & 3];
    }
    for (int i = 0; i < n; i++) {
        show("r", out[i]);
        show("ret", last_ret[i]);
    }
    return 0;
}

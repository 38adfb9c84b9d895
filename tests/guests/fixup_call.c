/* Fix-up class "call rel32": the pushed return address must be the original's. */
#include "guest.h"

u64 callee_ret[8];
u64 out[8];
u64 ncalls;

u64 callee(u64 x);
ASM_FUNC(callee,
    "    mov (%rsp), %rax\n"
    "    mov ncalls(%rip), %rdx\n"
    "    mov %rax, callee_ret(,%rdx,8)\n"
    "    incq ncalls(%rip)\n"
    "    lea 1(%rdi,%rdi,2), %rax\n"
    "    ret\n");

u64 call_rel32(u64 x);
ASM_FUNC(call_rel32,
    "    add $5, %rdi\n"
    PROBE(p_call) "    call callee\n"
    "    add $7, %rax\n"
    "    ret\n");

int main(void)
{
    for (int i = 0; i < 5; i++) {
        out[i] = call_rel32(i * 3);
        show("r", out[i]);
        show("ret", callee_ret[i]);
    }
    return 0;
}

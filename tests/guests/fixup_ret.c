/* Fix-up class "ret/lret": rip is already absolute (ret, ret $16, rep ret, lretq). */
#include "guest.h"

u64 out[32];

u64 ret16_callee(void);
ASM_FUNC(ret16_callee,
    "    mov 8(%rsp), %rax\n"
    "    add 16(%rsp), %rax\n"
    PROBE(p_ret16) "    ret $16\n");

u64 ret16(u64 a, u64 b);
ASM_FUNC(ret16,
    "    push %rsi\n"
    "    push %rdi\n"
    "    call ret16_callee\n"
    "    ret\n");

u64 repret(u64 x);
ASM_FUNC(repret,
    "    lea 3(%rdi), %rax\n"
    PROBE(p_repret) "    .byte 0xf3, 0xc3\n"); /* rep ret */

u64 plainret(u64 x);
ASM_FUNC(plainret,
    "    lea 4(%rdi,%rdi), %rax\n"
    PROBE(p_ret) "    ret\n");

u64 lret(u64 x);
ASM_FUNC(lret,
    "    mov %cs, %eax\n"
    "    push %rax\n"
    "    lea 1f(%rip), %rax\n"
    "    push %rax\n"
    PROBE(p_lret) "    lretq\n"
    "1:  lea 7(%rdi), %rax\n"
    "    ret\n");

int main(void)
{
    int n = 0;
    for (u64 i = 0; i < 5; i++) {
        out[n++] = ret16(i, 10 * i + 1);
        out[n++] = repret(i);
        out[n++] = plainret(i);
        out[n++] = lret(i);
    }
    for (int i = 0; i < n; i++)
        show("r", out[i]);
    return 0;
}

/* Fix-up class "relative jumps" (jcc rel8/rel32, jmp rel8/rel32): rip = addr + (rip - slot). */
#include "guest.h"

u64 out[16];

u64 jumps(u64 x);
ASM_FUNC(jumps,
    "    xor %eax, %eax\n"
    "    cmp $5, %rdi\n"
    PROBE(p_jcc8) "    jl 1f\n"
    "    add $1, %rax\n"
    "1:  test $2, %dil\n"
    PROBE(p_jcc32) "    {disp32} jne 2f\n"
    "    add $10, %rax\n"
    "2:\n"
    PROBE(p_jmp8) "    jmp 3f\n"
    "    add $100, %rax\n"
    "3:\n"
    PROBE(p_jmp32) "    {disp32} jmp 4f\n"
    "    add $1000, %rax\n"
    "4:  mov %rdi, %rcx\n"
    "    and $3, %rcx\n"
    "5:  add $10000, %rax\n"
    "    sub $1, %rcx\n"
    PROBE(p_jcc_back) "    jns 5b\n"      /* backwards: negative rel8 */
    "    ret\n");

int main(void)
{
    for (u64 i = 0; i < 8; i++) {
        out[i] = jumps(i * 3);
        show("r", out[i]);
    }
    return 0;
}

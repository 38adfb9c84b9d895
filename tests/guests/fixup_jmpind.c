/* Fix-up class "indirect jmp" (ff /4): rip is already absolute after the step. */
#include "guest.h"

u64 out[16];

u64 jmp_table(u64 x);
ASM_FUNC(jmp_table,
    "    mov %rdi, %rax\n"
    "    and $3, %rax\n"
    PROBE(p_jmp_table) "    jmp *jtab(,%rax,8)\n"
    ".Ljt0: mov $1000, %eax\n    ret\n"
    ".Ljt1: mov $1001, %eax\n    ret\n"
    ".Ljt2: lea 2000(%rdi), %rax\n    ret\n"
    ".Ljt3: lea 3000(%rdi,%rdi), %rax\n    ret\n"
    "    .pushsection .rodata\n"
    "    .p2align 3\n"
    "jtab: .quad .Ljt0, .Ljt1, .Ljt2, .Ljt3\n"
    "    .popsection\n");

u64 jmp_reg(u64 x);
ASM_FUNC(jmp_reg,
    "    lea 1f(%rip), %rdx\n"
    "    test $1, %dil\n"
    "    jz 2f\n"
    "    lea 3f(%rip), %rdx\n"
    "2:\n"
    PROBE(p_jmp_reg) "    jmp *%rdx\n"
    "1:  lea 5(%rdi), %rax\n    ret\n"
    "3:  lea 9(%rdi), %rax\n    ret\n");

int main(void)
{
    int n = 0;
    for (u64 i = 0; i < 6; i++) {
        out[n++] = jmp_table(i);
        out[n++] = jmp_reg(i);
    }
    for (int i = 0; i < n; i++)
        show("r", out[i]);
    return 0;
}

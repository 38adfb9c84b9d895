/*
 * Jump optimization (optprobes): one function per case of the optimizer's checks.
 *
 *   opt_plain       push; mov; lea: the jump covers 3 whole instructions (8 bytes)
 *   opt_riprel      a 7-byte RIP-relative load: the copy's displacement is re-targeted
 *   opt_jump_into   a loop whose back edge lands 2 bytes in: refused
 *   opt_call_near   a call among the first 5 bytes: refused (cannot run relocated)
 *   opt_indirect    an indirect jump in the function: refused (a jump table could land
 *                   inside the replaced bytes)
 */
#include "guest.h"

u64 ovar = 5;

u64 opt_plain(u64 x);
ASM_FUNC(opt_plain,
    "    push %rbp\n"              /* 55 */
    "    mov %rsp, %rbp\n"         /* 48 89 e5 */
    "    lea 1(%rdi), %rax\n"      /* 48 8d 47 01 */
    "    imul $3, %rax, %rax\n"
    "    pop %rbp\n"
    "    ret\n");

u64 opt_riprel(u64 x);
ASM_FUNC(opt_riprel,
    "    mov ovar(%rip), %rax\n"   /* 48 8b 05 disp32 */
    "    add %rdi, %rax\n"
    "    ret\n");

u64 opt_jump_into(u64 n);
ASM_FUNC(opt_jump_into,
    "    xor %eax, %eax\n"         /* 31 c0 */
    "1:  add $1, %rax\n"           /* 48 83 c0 01: the back edge's target, 2 bytes in */
    "    cmp %rdi, %rax\n"
    "    jb 1b\n"
    "    ret\n");

u64 opt_call_near(u64 x);
ASM_FUNC(opt_call_near,
    "    mov %rdi, %rsi\n"         /* 48 89 fe */
    "    call opt_riprel\n"        /* e8 rel32 */
    "    add %rsi, %rax\n"
    "    ret\n");

u64 opt_indirect(u64 x);
ASM_FUNC(opt_indirect,
    "    mov %rdi, %rax\n"         /* 48 89 f8 */
    "    lea 2f(%rip), %rcx\n"     /* 48 8d 0d disp32 */
    "    jmp *%rcx\n"
    "2:  add $1, %rax\n"
    "    ret\n");

int main(void)
{
    u64 sum = 0;
    for (u64 i = 0; i < 20; i++) {
        sum += opt_plain(i);
        sum += opt_riprel(i);
        sum += opt_jump_into(i % 5 + 1);
        sum += opt_call_near(i);
        sum += opt_indirect(i);
        ovar += sum & 3;
        if (i % 5 == 4)
            show("sum", sum);
    }
    return 0;
}

/* Fix-up class "iret": an iretq to the same CS/SS; rip is already absolute and IF comes
 * from the frame. */
#include "guest.h"

u64 out[8];

/* rdi: flag bits to set in the frame's rflags (IF, CF, ...).  Returns the flags after. */
u64 iret_fn(u64 bits);
ASM_FUNC(iret_fn,
    "    mov %rsp, %rdx\n"
    "    mov %ss, %eax\n"
    "    push %rax\n"
    "    push %rdx\n"
    "    pushfq\n"
    "    or %rdi, (%rsp)\n"
    "    mov %cs, %eax\n"
    "    push %rax\n"
    "    lea 1f(%rip), %rax\n"
    "    push %rax\n"
    PROBE(p_iret) "    iretq\n"
    "1:  pushfq\n"
    "    pop %rax\n"
    "    cli\n"
    "    ret\n");

int main(void)
{
    static const u64 bits[] = {0, 0x200, 0x1, 0x201, 0x8c0};
    for (int i = 0; i < 5; i++) {
        out[i] = iret_fn(bits[i]);
        show("r", out[i]);
    }
    return 0;
}

/* Fix-up class "pushf" and the IF modifiers (popf, cli, sti): the probe's TF/IF must
 * not leak into the flags the guest sees, and IF must end as the instruction set it. */
#include "guest.h"

u64 out[32];

/* rdi bit 0: interrupts on first; bit 1: CF set.  Returns the pushed flags. */
u64 pushf_fn(u64 how);
ASM_FUNC(pushf_fn,
    "    test $1, %dil\n"
    "    jz 1f\n"
    "    sti\n"
    "1:  bt $1, %rdi\n"
    PROBE(p_pushf) "    pushfq\n"
    "    pop %rax\n"
    "    cli\n"
    "    ret\n");

/* Loads rdi into the flags (rsi != 0: interrupts on before); returns the flags after. */
u64 popf_fn(u64 flags, u64 if_before);
ASM_FUNC(popf_fn,
    "    test %rsi, %rsi\n"
    "    jz 1f\n"
    "    sti\n"
    "1:  push %rdi\n"
    PROBE(p_popf) "    popfq\n"
    "    pushfq\n"
    "    pop %rax\n"
    "    cli\n"
    "    ret\n");

/* rdi bit 0: interrupts on first.  Returns flags after cli | flags after sti << 32. */
u64 clisti_fn(u64 how);
ASM_FUNC(clisti_fn,
    "    test $1, %dil\n"
    "    jz 1f\n"
    "    sti\n"
    "1:\n"
    PROBE(p_cli) "    cli\n"
    "    pushfq\n"
    "    pop %rcx\n"
    PROBE(p_sti) "    sti\n"
    "    pushfq\n"
    "    pop %rax\n"
    "    shl $32, %rax\n"
    "    or %rcx, %rax\n"
    "    cli\n"
    "    ret\n");

int main(void)
{
    static const u64 popf_values[] = {0x2, 0x202, 0x203, 0x8d7, 0x2d7};
    int n = 0;
    for (u64 i = 0; i < 4; i++)
        out[n++] = pushf_fn(i);
    for (u64 i = 0; i < 5; i++) {
        out[n++] = popf_fn(popf_values[i], 0);
        out[n++] = popf_fn(popf_values[i], 1);
    }
    for (u64 i = 0; i < 2; i++)
        out[n++] = clisti_fn(i);
    for (int i = 0; i < n; i++)
        show("r", out[i]);
    return 0;
}

/*
 * The probe engine's behaviour tests: a labelled add (aggregates, handlers that take
 * over, disable/enable, unregister mid-run), a jprobe target with a guest-resident
 * handler ending in jprobe_return(), and data for refusals.
 */
#include "guest.h"

u64 out[16];
const u64 some_data = 0x1234;

/* rax = (x + 1) * 2; the add is what the probes sit on (4 bytes: 48 83 c0 01). */
u64 step_fn(u64 x);
ASM_FUNC(step_fn,
    "    mov %rdi, %rax\n"
    PROBE(p_add) "    add $1, %rax\n"
    PROBE(p_after) "    shl $1, %rax\n"
    "    ret\n");

/* The jprobe glue, as arch/x86_64/kernel/kprobes.c has it. */
u64 jprobe_saved_rsp;
void jprobe_return(void);
ASM_FUNC(jprobe_return,
    "    mov jprobe_saved_rsp(%rip), %rbx\n"
    "    xchg %rbx, %rsp\n"
    "    int3\n"
    "    .globl jprobe_return_end\n"
    "jprobe_return_end:\n"
    "    nop\n"
    "    ret\n");

u64 jseen_a, jseen_b, jcount;

__attribute__((noinline, noipa)) u64 jtarget(u64 a, u64 b)
{
    return a * 10 + b;
}

/* A jprobe handler: the probed function's prototype, ends with jprobe_return(). */
__attribute__((noinline, noipa)) u64 j_handler(u64 a, u64 b)
{
    jseen_a = a;
    jseen_b = b;
    jcount++;
    jprobe_return();
    return 0;
}

int main(void)
{
    for (u64 i = 0; i < 10; i++) {
        out[i] = step_fn(i);
        show("s", out[i]);
    }
    for (u64 i = 0; i < 4; i++)
        show("j", jtarget(i + 3, 2 * i + 1));
    return 0;
}

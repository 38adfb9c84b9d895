/* rep string instructions: stepped one iteration at a time (each iteration hits the
 * probe again); never boosted; the clock must come out exactly as unprobed. */
#include "guest.h"

u8 src[64] = "the quick brown fox jumps over the lazy dog, twice over";
u8 dst[64];
u64 qwords[16];
u64 out[32];

/* rep movsb: copy n bytes; returns rcx left (0). */
u64 rep_movsb(void *d, const void *s, u64 n);
ASM_FUNC(rep_movsb,
    "    mov %rdx, %rcx\n"
    PROBE(p_rep_movsb) "    rep movsb\n"
    "    mov %rcx, %rax\n"
    "    ret\n");

/* rep stosq: fill n qwords with v. */
u64 rep_stosq(void *d, u64 n, u64 v);
ASM_FUNC(rep_stosq,
    "    mov %rsi, %rcx\n"
    "    mov %rdx, %rax\n"
    PROBE(p_rep_stosq) "    rep stosq\n"
    "    mov %rcx, %rax\n"
    "    ret\n");

/* repe cmpsb over n bytes: returns rcx left | ZF << 32. */
u64 repe_cmpsb(const void *a, const void *b, u64 n);
ASM_FUNC(repe_cmpsb,
    "    mov %rdx, %rcx\n"
    "    xor %eax, %eax\n"
    "    cmp %eax, %eax\n"    /* ZF = 1 before: an empty compare leaves it */
    PROBE(p_repe_cmpsb) "    repe cmpsb\n"
    "    sete %al\n"
    "    shl $32, %rax\n"
    "    or %rcx, %rax\n"
    "    ret\n");

int main(void)
{
    static const u64 sizes[] = {0, 1, 5, 37};
    int n = 0;
    for (int i = 0; i < 4; i++) {
        out[n++] = rep_movsb(dst + i, src, sizes[i]);
        out[n++] = rep_stosq(qwords + i, sizes[i] & 7, 0x1111111111111111UL * (i + 1));
    }
    dst[20] ^= 1;
    for (int i = 0; i < 4; i++)
        out[n++] = repe_cmpsb(dst + 3, src, sizes[i] ? sizes[i] + 10 : 0);
    out[n++] = repe_cmpsb(src, src, 9);
    for (int i = 0; i < n; i++)
        show("r", out[i]);
    puts_((const char *)dst + 3);
    putc_('\n');
    return 0;
}

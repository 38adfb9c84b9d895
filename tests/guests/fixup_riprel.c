/* Fix-up class "RIP-relative operand": the copy in the slot gets a re-targeted disp32. */
#include "guest.h"

u64 rr_src = 0x1000;
u64 rr_dst;
u32 rr_imm_dst;
u64 rr_acc;
u64 rr_table[4] = {11, 22, 33, 44};
u64 out[8];

u64 riprel(u64 x);
ASM_FUNC(riprel,
    "    mov %rdi, %rcx\n"
    PROBE(p_load)      "    mov rr_src(%rip), %rax\n"          /* load */
    "    add %rcx, %rax\n"
    PROBE(p_store)     "    mov %rax, rr_dst(%rip)\n"          /* store */
    PROBE(p_store_imm) "    movl $0x12345678, rr_imm_dst(%rip)\n" /* disp32 then imm32 */
    PROBE(p_cmp_imm8)  "    cmpq $3, rr_acc(%rip)\n"           /* disp32 then imm8 */
    "    setb %dl\n"
    "    movzbl %dl, %edx\n"
    "    add %rdx, %rax\n"
    PROBE(p_add_mem)   "    add %rcx, rr_acc(%rip)\n"          /* read-modify-write */
    PROBE(p_lea)       "    lea rr_table(%rip), %rdx\n"        /* address only */
    "    and $3, %rcx\n"
    "    add (%rdx,%rcx,8), %rax\n"
    "    ret\n");

int main(void)
{
    static const u64 in[6] = {1, 1, 1, 5, 7, 0x100};
    for (int i = 0; i < 6; i++) {
        out[i] = riprel(in[i]);
        rr_src += 0x10;
        show("r", out[i]);
    }
    show("dst", rr_dst);
    show("imm", rr_imm_dst);
    show("acc", rr_acc);
    return 0;
}

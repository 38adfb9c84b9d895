/*
 * fixups.S - instructions that need special handling when a kprobe
 * single-steps them out of line (Linux 2.6.12 arch/x86_64/kernel/
 * kprobes.c: resume_execution() / is_riprel()).  Each fx_* symbol is a
 * function with a C prototype (see fixups.h) and is exercised once by
 * fixup_selftest() during boot.
 */
	.code64

	.section .rodata
	.balign 8
	.globl fx_rip_data
	.type fx_rip_data, @object
fx_rip_data:
	.quad	0x1122334455667788
	.size fx_rip_data, 8

	/* call *fx_call_table(,%rdi,8) targets */
	.globl fx_call_table
	.type fx_call_table, @object
fx_call_table:
	.quad	fx_helper_add1
	.quad	fx_helper_double
	.quad	fx_helper_square
	.size fx_call_table, 24

	/* jmp *fx_jmp_table(,%rdi,8) targets */
	.globl fx_jmp_table
	.type fx_jmp_table, @object
fx_jmp_table:
	.quad	.Ljmp0
	.quad	.Ljmp1
	.quad	.Ljmp2
	.size fx_jmp_table, 24

	.data
	.balign 8
	.globl fx_store_target
	.type fx_store_target, @object
fx_store_target:
	.quad	0
	.size fx_store_target, 8

	.text

/* unsigned long fx_helper_add1(unsigned long x): x + 1 */
	.globl fx_helper_add1
	.type fx_helper_add1, @function
	.p2align 4
fx_helper_add1:
	leaq	1(%rdi), %rax
	ret
	.size fx_helper_add1, . - fx_helper_add1

/* unsigned long fx_helper_double(unsigned long x): 2 * x */
	.globl fx_helper_double
	.type fx_helper_double, @function
	.p2align 4
fx_helper_double:
	leaq	(%rdi,%rdi), %rax
	ret
	.size fx_helper_double, . - fx_helper_double

/* unsigned long fx_helper_square(unsigned long x): x * x */
	.globl fx_helper_square
	.type fx_helper_square, @function
	.p2align 4
fx_helper_square:
	movq	%rdi, %rax
	imulq	%rdi, %rax
	ret
	.size fx_helper_square, . - fx_helper_square

/* unsigned long fx_rip_load(void): RIP-relative load (48 8b 05 disp32) */
	.globl fx_rip_load
	.type fx_rip_load, @function
	.p2align 4
fx_rip_load:
	movq	fx_rip_data(%rip), %rax
	ret
	.size fx_rip_load, . - fx_rip_load

/* void fx_rip_store(unsigned long v): RIP-relative store (48 89 3d disp32) */
	.globl fx_rip_store
	.type fx_rip_store, @function
	.p2align 4
fx_rip_store:
	movq	%rdi, fx_store_target(%rip)
	ret
	.size fx_rip_store, . - fx_rip_store

/* unsigned long fx_call_rel32(unsigned long x): call rel32 (e8), 2*x */
	.globl fx_call_rel32
	.type fx_call_rel32, @function
	.p2align 4
fx_call_rel32:
	pushq	%rbp
	movq	%rsp, %rbp
	call	fx_helper_double
	popq	%rbp
	ret
	.size fx_call_rel32, . - fx_call_rel32

/*
 * unsigned long fx_indirect_call(unsigned long idx):
 *   r = fx_call_table[idx](idx)   via call *fx_call_table(,%rdi,8) (ff 14 fd)
 *   return fx_helper_add1(r)      via call *%rax                  (ff d0)
 */
	.globl fx_indirect_call
	.type fx_indirect_call, @function
	.p2align 4
fx_indirect_call:
	pushq	%rbp
	movq	%rsp, %rbp
	call	*fx_call_table(,%rdi,8)
	movq	%rax, %rdi
	movq	$fx_helper_add1, %rax
	call	*%rax
	popq	%rbp
	ret
	.size fx_indirect_call, . - fx_indirect_call

/* unsigned long fx_indirect_jmp(unsigned long idx): jmp *fx_jmp_table(,%rdi,8)
 * (ff 24 fd); returns 0x100 + idx, or ~0 when idx is out of range */
	.globl fx_indirect_jmp
	.type fx_indirect_jmp, @function
	.p2align 4
fx_indirect_jmp:
	cmpq	$3, %rdi
	jae	.Ljmp_bad
	jmp	*fx_jmp_table(,%rdi,8)
.Ljmp0:
	movl	$0x100, %eax
	ret
.Ljmp1:
	movl	$0x101, %eax
	ret
.Ljmp2:
	movl	$0x102, %eax
	ret
.Ljmp_bad:
	movq	$-1, %rax
	ret
	.size fx_indirect_jmp, . - fx_indirect_jmp

/*
 * unsigned long fx_ret_imm16(unsigned long a, unsigned long b): a - b
 *
 * The caller half pushes two quadwords (b, then a) and calls the callee
 * half, fx_ret_imm16_callee, which reads them off the stack and returns
 * with "ret $16" (c2 10 00), popping them.  Both halves lie inside the
 * fx_ret_imm16 symbol; fx_ret_imm16_callee is also a global function
 * symbol of its own (not callable from C: it uses a stack convention).
 */
	.globl fx_ret_imm16
	.type fx_ret_imm16, @function
	.p2align 4
fx_ret_imm16:
	pushq	%rbp
	movq	%rsp, %rbp
	pushq	%rsi
	pushq	%rdi
	call	fx_ret_imm16_callee
	popq	%rbp
	ret
	.globl fx_ret_imm16_callee
	.type fx_ret_imm16_callee, @function
fx_ret_imm16_callee:
	movq	8(%rsp), %rax		/* a */
	subq	16(%rsp), %rax		/* - b */
	ret	$16
	.size fx_ret_imm16_callee, . - fx_ret_imm16_callee
	.size fx_ret_imm16, . - fx_ret_imm16

/* unsigned long fx_rep_ret(unsigned long x): x + 1, returns with "rep ret"
 * (f3 c3) */
	.globl fx_rep_ret
	.type fx_rep_ret, @function
	.p2align 4
fx_rep_ret:
	leaq	1(%rdi), %rax
	rep ret
	.size fx_rep_ret, . - fx_rep_ret

/*
 * unsigned long fx_pushf_popf(void): pushfq/popfq.  Sets DF through a
 * popfq, reads the flags back with pushfq and returns that value, then
 * restores the original flags.  Bit 10 (DF) must be set in the result,
 * bit 8 (TF) must be clear.
 */
	.globl fx_pushf_popf
	.type fx_pushf_popf, @function
	.p2align 4
fx_pushf_popf:
	pushfq				/* original flags */
	pushfq
	orq	$0x400, (%rsp)		/* DF */
	popfq
	pushfq
	popq	%rax			/* flags with DF set */
	popfq				/* restore: DF clear again */
	ret
	.size fx_pushf_popf, . - fx_pushf_popf

/*
 * unsigned long fx_cli_sti(void): pushfq; cli; ...; sti; popfq.
 * Returns the flags observed inside the cli region (IF must be 0); the
 * caller's interrupt state is restored by the popfq.
 */
	.globl fx_cli_sti
	.type fx_cli_sti, @function
	.p2align 4
fx_cli_sti:
	pushfq
	cli
	pushfq
	popq	%rax
	sti
	popfq
	ret
	.size fx_cli_sti, . - fx_cli_sti

/*
 * unsigned long fx_iretq(unsigned long x): builds an interrupt frame for
 * the current CS/SS/RSP/RFLAGS and iretq's (48 cf) to a label; x + 1.
 */
	.globl fx_iretq
	.type fx_iretq, @function
	.p2align 4
fx_iretq:
	pushq	%rbp
	movq	%rsp, %rbp
	movq	%rsp, %rdx
	movl	%ss, %eax
	pushq	%rax			/* SS */
	pushq	%rdx			/* RSP */
	pushfq				/* RFLAGS */
	movl	%cs, %eax
	pushq	%rax			/* CS */
	leaq	.Liret_target(%rip), %rax
	pushq	%rax			/* RIP */
	iretq
.Liret_target:
	leaq	1(%rdi), %rax
	popq	%rbp
	ret
	.size fx_iretq, . - fx_iretq

/*
 * unsigned long fx_lret(unsigned long x): pushes $0x08 and a label and
 * far-returns with lretq (48 cb); x + 2.
 */
	.globl fx_lret
	.type fx_lret, @function
	.p2align 4
fx_lret:
	pushq	%rbp
	movq	%rsp, %rbp
	pushq	$0x08
	leaq	.Llret_target(%rip), %rax
	pushq	%rax
	lretq
.Llret_target:
	leaq	2(%rdi), %rax
	popq	%rbp
	ret
	.size fx_lret, . - fx_lret

	.section .note.GNU-stack, "", @progbits

/* fixups.h - C prototypes of the functions in fixups.S */
#ifndef _MK_FIXUPS_H
#define _MK_FIXUPS_H

extern const unsigned long fx_rip_data;
extern unsigned long fx_store_target;

unsigned long fx_helper_add1(unsigned long x);
unsigned long fx_helper_double(unsigned long x);
unsigned long fx_helper_square(unsigned long x);
unsigned long fx_rip_load(void);
void fx_rip_store(unsigned long v);
unsigned long fx_call_rel32(unsigned long x);
unsigned long fx_indirect_call(unsigned long idx);
unsigned long fx_indirect_jmp(unsigned long idx);
unsigned long fx_ret_imm16(unsigned long a, unsigned long b);
void fx_ret_imm16_callee(void);	/* stack convention: two quadwords, ret $16 */
unsigned long fx_rep_ret(unsigned long x);
unsigned long fx_pushf_popf(void);
unsigned long fx_cli_sti(void);
unsigned long fx_iretq(unsigned long x);
unsigned long fx_lret(unsigned long x);

int fixup_selftest(void);

#endif

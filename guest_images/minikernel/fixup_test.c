/*
 * fixup_test.c - runs every function in fixups.S once and prints one
 * line per result.  With probes planted on them by the host, the same
 * lines must come out: that is what the single-step fix-ups guarantee.
 */
#include "sched.h"
#include "fixups.h"

static int fixups_passed, fixups_run;

static void report(const char *name, const char *detail, int ok)
{
	fixups_run++;
	fixups_passed += ok;
	printk("fixup: %-16s %s %s\n", name, detail, ok ? "ok" : "FAILED");
}

__kfunc int fixup_selftest(void)
{
	char d[96];
	unsigned long v, before, after;

	fixups_passed = fixups_run = 0;

	v = fx_rip_load();
	snprintf(d, sizeof(d), "-> 0x%lx", v);
	report("fx_rip_load", d, v == 0x1122334455667788UL);

	fx_store_target = 0;
	fx_rip_store(0xfeedfacecafef00dUL);
	v = fx_store_target;
	snprintf(d, sizeof(d), "-> fx_store_target=0x%lx", v);
	report("fx_rip_store", d, v == 0xfeedfacecafef00dUL);

	v = fx_call_rel32(21);
	snprintf(d, sizeof(d), "(21) -> %lu", v);
	report("fx_call_rel32", d, v == 42);

	v = fx_indirect_call(2);		/* add1(square(2)) */
	snprintf(d, sizeof(d), "(2) -> %lu", v);
	report("fx_indirect_call", d, v == 5);

	v = fx_indirect_jmp(1);
	snprintf(d, sizeof(d), "(1) -> 0x%lx", v);
	report("fx_indirect_jmp", d, v == 0x101);

	v = fx_ret_imm16(100, 58);
	snprintf(d, sizeof(d), "(100, 58) -> %lu", v);
	report("fx_ret_imm16", d, v == 42);

	v = fx_rep_ret(41);
	snprintf(d, sizeof(d), "(41) -> %lu", v);
	report("fx_rep_ret", d, v == 42);

	before = __save_flags();
	v = fx_pushf_popf();
	after = __save_flags();
	snprintf(d, sizeof(d), "-> DF=%lu TF=%lu, DF after=%lu",
		 (v >> 10) & 1, (v >> 8) & 1, (after >> 10) & 1);
	report("fx_pushf_popf", d, (v & X86_EFLAGS_DF) && !(v & X86_EFLAGS_TF) &&
	       !(after & X86_EFLAGS_DF) && (before & X86_EFLAGS_IF) == (after & X86_EFLAGS_IF));

	before = __save_flags();
	v = fx_cli_sti();
	after = __save_flags();
	snprintf(d, sizeof(d), "-> IF inside=%lu, IF before=%lu after=%lu",
		 (v >> 9) & 1, (before >> 9) & 1, (after >> 9) & 1);
	report("fx_cli_sti", d, !(v & X86_EFLAGS_IF) &&
	       (before & X86_EFLAGS_IF) == (after & X86_EFLAGS_IF));

	before = __save_flags();
	v = fx_iretq(41);
	after = __save_flags();
	snprintf(d, sizeof(d), "(41) -> %lu", v);
	report("fx_iretq", d, v == 42 && (before & X86_EFLAGS_IF) == (after & X86_EFLAGS_IF));

	v = fx_lret(40);
	snprintf(d, sizeof(d), "(40) -> %lu", v);
	report("fx_lret", d, v == 42);

	printk("fixup: %d/%d passed\n", fixups_passed, fixups_run);
	return fixups_passed == fixups_run ? 0 : -1;
}

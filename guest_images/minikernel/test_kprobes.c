/*
 * test_kprobes.c - targets for the kprobes smoke test (after Linux's
 * kernel/test_kprobes.c).  The host may overwrite smoke_rand1 before the
 * guest runs; smoke_test() is called once, early, by init.
 */
#include "sched.h"

volatile u32 div_factor = 3;
u32 smoke_rand1 = 0x9e3779b9;
u32 smoke_result1;
u32 smoke_result2;

__kfunc u32 kprobe_target(u32 value)
{
	return (value / div_factor);
}

__kfunc u32 kprobe_target2(u32 value)
{
	return (value / div_factor) + 1;
}

__kfunc void smoke_test(void)
{
	u32 rand1 = smoke_rand1;

	smoke_result1 = kprobe_target(rand1);
	smoke_result2 = kprobe_target2(rand1);
	printk("smoke_test: kprobe_target(0x%08x) = 0x%08x, kprobe_target2(0x%08x) = 0x%08x\n",
	       rand1, smoke_result1, rand1, smoke_result2);
}

/*
 * kprobes.c - the guest-resident half of kprobes (arch/x86_64/kernel/
 * kprobes.c of Linux 2.6.12).  The host implements register_kprobe()
 * and friends; the guest only provides the code the host needs to find
 * in guest memory:
 *
 *   kretprobe_trampoline  the return address planted by kretprobes; the
 *                         host keeps a probe on it, its nop never runs
 *   jprobe_return         jprobe handlers end here: rsp is restored from
 *                         jprobe_saved_rsp (written by the host) and int3
 *                         hands control back to the host
 *   kprobe_flush_task     called when a task exits or execs; the host
 *                         intercepts it to recycle kretprobe instances
 *
 * and a few jprobe handlers with the exact prototypes of the functions
 * they mirror.  The guest never calls the handlers itself.
 */
#include "sched.h"
#include "fs.h"
#include "net.h"

/* Written by the host before it resumes a jprobe handler. */
unsigned long jprobe_saved_rsp;
/* Written by jkprobe_target(). */
u32 jprobe_seen_value;

__kfunc void kretprobe_trampoline_holder(void)
{
	asm volatile(".global kretprobe_trampoline\n"
		     "kretprobe_trampoline:\n"
		     "nop\n");
}

__kfunc void jprobe_return(void)
{
	asm volatile("xchg %%rbx,%%rsp\n"
		     "int3\n"
		     ".globl jprobe_return_end\n"
		     "jprobe_return_end:\n"
		     "nop\n"
		     : : "b"(jprobe_saved_rsp) : "memory");
}

/*
 * Remove function-return probe instances associated with this task and
 * put them back on the free list.  Empty in the guest: the host
 * intercepts calls to it.  Do not put a kretprobe on it.
 */
__kfunc void kprobe_flush_task(struct task_struct *tk)
{
	(void)tk;
	asm volatile("");
}

/* ------------------------------------------------------------------ */
/* jprobe handlers */

__kfunc long jdo_fork(unsigned long clone_flags, unsigned long stack_start,
		      struct pt_regs *regs, unsigned long stack_size)
{
	printk("jprobe: do_fork(clone_flags=0x%lx, stack_start=0x%lx, regs=%p, stack_size=%lu) from %s[%d]\n",
	       clone_flags, stack_start, regs, stack_size, current->comm, current->pid);
	jprobe_return();
	return 0;
}

__kfunc int jip_queue_xmit(struct sk_buff *skb, int ipfragok)
{
	printk("jprobe: ip_queue_xmit(skb=%p, ipfragok=%d) len=%u from %s[%d]\n",
	       skb, ipfragok, skb ? skb->len : 0, current->comm, current->pid);
	jprobe_return();
	return 0;
}

__kfunc long jdo_sys_open(int dfd, const char *filename, int flags, int mode)
{
	printk("jprobe: do_sys_open(dfd=%d, filename=\"%s\", flags=0x%x, mode=0%o) from %s[%d]\n",
	       dfd, filename, flags, mode, current->comm, current->pid);
	jprobe_return();
	return 0;
}

__kfunc u32 jkprobe_target(u32 value)
{
	jprobe_seen_value = value;
	printk("jprobe: kprobe_target(value=0x%x)\n", value);
	jprobe_return();
	return 0;
}

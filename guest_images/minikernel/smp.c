/*
 * smp.c - secondary CPU bring-up (arch/x86_64/kernel/smpboot.c shaped).
 * Compiled only into the SMP kernel (minikernel-smp.elf, -DCONFIG_SMP);
 * the UP kernel (minikernel.elf) has none of this, as a 2.6 kernel built
 * without CONFIG_SMP.
 *
 * The machine's "APIC" is one I/O port, SMP_STARTUP_PORT: inl() from it
 * gives the number of CPUs, and outl() of the address of a struct
 * ap_boot_params starts that AP in 64-bit mode at params.rip with
 * params.rsp and GS_BASE = params.gs_base and IF=0 (the INIT/SIPI
 * sequence, with the real-mode trampoline done by the host).
 *
 * Each AP gets an idle task ("swapper", pid 0, like Linux's fork_idle()),
 * loads the IDT, calls in and enters cpu_idle().  Tasks are spread over
 * the online CPUs when they are forked (sched_fork) and stay there: one
 * run queue per CPU, each under its own spinlock.
 */
#include "sched.h"
#include "fs.h"

#define SMP_STARTUP_PORT	0x4f0

struct ap_boot_params {
	unsigned long cpu, rip, rsp, gs_base;
};

static struct ap_boot_params ap_boot_params;
static struct task_struct idle_tasks[NR_CPUS];
static union thread_union idle_stacks[NR_CPUS] __aligned(THREAD_SIZE);

int nr_cpus_present = 1;			/* what the machine reported */
volatile int num_online_cpus = 1;		/* the boot CPU is online */
volatile unsigned long cpu_callin_map;		/* bit n: CPU n has called in */
volatile int system_halting;			/* machine_halt(): idle CPUs park */

extern void secondary_startup_64(void);

static inline unsigned int inl(u16 port)
{
	unsigned int v;
	__asm__ __volatile__("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(unsigned int value, u16 port)
{
	__asm__ __volatile__("outl %0, %1" : : "a"(value), "Nd"(port));
}

/* How many CPUs the machine has (the MP table / MADT, in short). */
__kfunc int smp_detect_cpus(void)
{
	int n = (int)inl(SMP_STARTUP_PORT);

	if (n < 1 || n > NR_CPUS)
		n = 1;
	nr_cpus_present = n;
	return n;
}

/* fork_idle(): the AP's idle task, a copy of init_task on its own stack. */
__kfunc struct task_struct *fork_idle(int cpu)
{
	struct task_struct *idle = &idle_tasks[cpu];
	union thread_union *stack = &idle_stacks[cpu];

	*idle = init_task;
	idle->stack = stack;
	idle->cpu = cpu;
	idle->oncpu = 0;
	idle->next_task = NULL;		/* idle tasks are not on the task list */
	INIT_LIST_HEAD(&idle->run_list);
	init_waitqueue_head(&idle->wait_chldexit);
	idle->files = &idle->files_store;
	init_files(idle->files);
	idle->thread.rsp0 = (unsigned long)stack + THREAD_SIZE;
	stack->thread_info.task = idle;
	stack->thread_info.flags = 0;
	stack->thread_info.cpu = cpu;
	stack->thread_info.preempt_count = 1;	/* until cpu_idle() */
	return idle;
}

/* Start one AP and wait until it has called in. */
__kfunc void do_boot_cpu(int cpu)
{
	struct task_struct *idle = fork_idle(cpu);
	unsigned long top = (unsigned long)idle->stack + THREAD_SIZE;

	cpu_pda[cpu].pcurrent = idle;
	cpu_pda[cpu].cpunumber = cpu;
	cpu_pda[cpu].kernelstack = top;
	cpu_pda[cpu].irqcount = -1;
	ap_boot_params.cpu = cpu;
	ap_boot_params.rip = (unsigned long)secondary_startup_64;
	ap_boot_params.rsp = top;
	ap_boot_params.gs_base = (unsigned long)&cpu_pda[cpu];
	barrier();
	outl((unsigned int)(unsigned long)&ap_boot_params, SMP_STARTUP_PORT);
	while (!(cpu_callin_map & (1UL << cpu)))
		cpu_relax();
}

__kfunc void smp_boot_cpus(void)
{
	for (int cpu = 1; cpu < nr_cpus_present; cpu++)
		do_boot_cpu(cpu);
	printk("smp: %d cpus online\n", num_online_cpus);
}

/* The AP's first C code (from secondary_startup_64, head.S). */
__kfunc void start_secondary(void)
{
	int cpu = smp_processor_id();

	load_idt();
#ifdef CONFIG_USERSPACE
	enable_paging();
	cpu_init_user();
#endif
	sched_init_secondary();
	printk("smp: cpu %d called in, idle task on stack %p\n", cpu, current->stack);
	num_online_cpus++;		/* only the BSP reads it, after callin */
	barrier();
	cpu_callin_map |= 1UL << cpu;
	preempt_enable_no_resched();
	cpu_idle();
}

/*
 * traps.c - the interrupt descriptor table and the timer interrupt
 * (arch/x86_64/kernel/traps.c, i8259.c and time.c shaped).
 *
 * Only vector 0x20 (the timer) is installed: faults are handled by the
 * machine, not by the guest.
 */
#include "sched.h"

struct gate_struct {
	u16 offset_low;
	u16 segment;
	u8 ist;
	u8 type_attr;			/* P | DPL | type */
	u16 offset_middle;
	u32 offset_high;
	u32 zero1;
} __attribute__((packed));

#define GATE_INTERRUPT	0xE
#define IDT_ENTRIES	256

struct gate_struct idt_table[IDT_ENTRIES] __aligned(4096);

struct desc_ptr {
	u16 size;
	unsigned long address;
} __attribute__((packed));

struct desc_ptr idt_descr = { IDT_ENTRIES * 16 - 1, (unsigned long)idt_table };

unsigned long timer_ticks;

_Static_assert(sizeof(struct gate_struct) == 16, "gate");

__kfunc void set_intr_gate(unsigned int n, void *addr)
{
	unsigned long a = (unsigned long)addr;
	struct gate_struct *g = &idt_table[n];

	g->offset_low = a & 0xffff;
	g->segment = __KERNEL_CS;
	g->ist = 0;
	g->type_attr = 0x80 | GATE_INTERRUPT;	/* present, DPL 0 */
	g->offset_middle = (a >> 16) & 0xffff;
	g->offset_high = a >> 32;
	g->zero1 = 0;
}

__kfunc void trap_init(void)
{
	set_intr_gate(TIMER_VECTOR, timer_interrupt);
	__asm__ __volatile__("lidt %0" : : "m"(idt_descr));
}

#ifdef CONFIG_SMP
/* IDTR is per CPU: every AP loads the one IDT the boot CPU built. */
__kfunc void load_idt(void)
{
	__asm__ __volatile__("lidt %0" : : "m"(idt_descr));
}
#endif

__kfunc void time_init(void)
{
	jiffies = 0;
	timer_ticks = 0;
	printk("time.c: using the machine's instruction-count timer on vector 0x%x\n",
	       TIMER_VECTOR);
}

/* kernel/timer.c: update_process_times() */
__kfunc void update_process_times(int user_tick)
{
	(void)user_tick;
	run_local_timers();
	scheduler_tick();
}

/* Called from timer_interrupt (entry.S) with interrupts disabled. */
__kfunc void do_timer_interrupt(struct pt_regs *regs)
{
#ifdef CONFIG_SMP
	/* Every CPU has its own (local APIC) timer; only the boot CPU's
	 * advances jiffies, as do_timer() runs on one CPU in Linux. */
	if (smp_processor_id() == 0) {
		timer_ticks++;
		jiffies++;
	}
#else
	timer_ticks++;
	jiffies++;
#endif
	update_process_times((regs->cs & 3) != 0);
	outb(PIC_EOI, PIC_MASTER_CMD);		/* EOI (ignored by the machine) */
}

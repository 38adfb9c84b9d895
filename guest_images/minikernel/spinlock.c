/*
 * spinlock.c - out-of-line spinlock entry points (kernel/spinlock.c).
 * Taking a lock disables preemption; the _irqsave variants also save
 * and disable the interrupt flag and restore it on unlock.
 */
#include "sched.h"

__kfunc void _spin_lock(spinlock_t *lock)
{
	preempt_disable();
	_raw_spin_lock(lock);
}

__kfunc void _spin_unlock(spinlock_t *lock)
{
	_raw_spin_unlock(lock);
	preempt_enable();
}

__kfunc unsigned long _spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	local_irq_save(flags);
	preempt_disable();
	_raw_spin_lock(lock);
	return flags;
}

__kfunc void _spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	_raw_spin_unlock(lock);
	local_irq_restore(flags);
	preempt_enable();
}

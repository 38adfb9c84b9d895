"""Per-CPU kprobe state: struct kprobe_ctlblk, and the 2005 global kprobe lock.

The 2.6.12 kernel kept the state of the probe being handled in plain globals
(current_kprobe, kprobe_status, kprobe_saved_rflags, kprobe_old_rflags, and for jprobes
jprobe_saved_regs and jprobes_stack) and made that safe on SMP with one spinlock,
kprobe_lock: lock_kprobes() in kprobe_handler at the int3, unlock_kprobes() in
post_kprobe_handler after the single-step (or in a pre_handler that took over, such as the
kretprobe trampoline's).  kprobe_running() was "kprobe_cpu == smp_processor_id()": this CPU
holds the lock.  A second CPU that hit any int3 meanwhile spun in lock_kprobes().

Linux 2.6.15-2.6.16 removed the lock from the hit path: the probe hash lists became
RCU-protected (get_kprobe under rcu_read_lock, no lock to find a probe), and the state
moved into a per-CPU `struct kprobe_ctlblk` (plus a per-CPU current_kprobe), so probes
hit on different CPUs are handled at the same time; only register/unregister take a mutex.

The engine keeps the state per CPU, as the later kernels do (each vCPU's control block is
chosen by the CPU that trapped), and keeps the 2005 serialisation as documented
behaviour on top: the lock is held by a CPU exactly while its control block has a current
kprobe (from the int3 to the end of the step), so the engine derives the lock's owner from
the control blocks instead of keeping a second copy of that fact.  See KprobeEngine's
kprobe_handler for what a CPU that finds the lock taken does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._kstate import CtlblkState
from .narrate import LockSpin

if TYPE_CHECKING:
    from ..machine import Machine
    from .core import KprobeEngine


class KprobeCtlblk(CtlblkState):
    """struct kprobe_ctlblk: one CPU's kprobe state (and its jprobe save area).
    current_kprobe and kprobe_status are CtlblkState's, where the C hit reads them (see
    _kstate.c)."""

    __slots__ = (
        "kprobe_saved_rflags", "kprobe_old_rflags",
        "prev_kprobe", "rep_count_before", "ss_in_place", "spinning",
        "jprobe_saved_regs", "jprobe_saved_rsp", "jprobes_stack", "jprobe_clock_at_entry", "jprobe_tick_at_entry",
        "jprobe_active",
    )

    def __init__(self) -> None:
        self.current_kprobe = None
        self.kprobe_status = None
        self.kprobe_saved_rflags = 0
        self.kprobe_old_rflags = 0
        self.prev_kprobe = None      # save_previous_kprobe (a probe hit inside a handler)
        self.rep_count_before = None
        self.ss_in_place = False     # the step runs at the probed address (set kprobe-step in-place)
        self.spinning = False        # this CPU is spinning on the 2005 kprobe_lock
        self.jprobe_saved_regs = None
        self.jprobe_saved_rsp = 0
        self.jprobes_stack = b""
        self.jprobe_clock_at_entry = 0
        self.jprobe_tick_at_entry = 0
        self.jprobe_active = None


def per_cpu(field: str, doc: str = "") -> property:
    """An attribute that reads and writes the trapping CPU's control block: the kernel's
    __get_cpu_var(field).  The object needs a `kcb` property that gives this CPU's block."""

    def get(self):
        return getattr(self.kcb, field)

    def set(self, value) -> None:
        setattr(self.kcb, field, value)

    return property(get, set, doc=doc or f"this CPU's kprobe_ctlblk.{field}")


# ---------------------------------------------------------------------- the 2005 kprobe_lock
def spin_on_kprobe_lock(engine: "KprobeEngine", machine: Machine, addr: int) -> bool:
    """2.6.12's lock_kprobes() on a CPU that finds the lock taken: it spins until the
    lock is free.  Modelled as waiting: the trap is undone (rip back on the int3, which
    is counted again when it is taken again) and this CPU is not scheduled for the rest
    of its quantum, so the CPU that holds the lock runs on; when its turn comes again
    the int3 traps again and takes the lock if it is free by then (the holder hands it
    over: _hand_over_kprobe_lock).  Its clock does not run while it waits: charging
    the spin to it (a whole quantum per wait) made a CPU that hits many probes spend
    more time spinning than its timer period, a livelock of the model rather than of
    the kernel.  No handler runs meanwhile: handlers never run on two CPUs at once."""
    engine.lock_spins += 1
    engine.kcb.spinning = True
    machine.set_reg("rip", addr)
    machine.clock.adjust(-1)
    if engine.narrator is not None:
        engine.narrate(LockSpin(machine.cpu_id, addr))
    machine.smp.end_quantum()
    return True


def hand_over_kprobe_lock(engine: "KprobeEngine", machine: Machine) -> None:
    """unlock_kprobes() with a CPU spinning on the lock: on hardware the spinner sees
    the lock free within a few cycles and takes it, long before this CPU reaches its
    next probe.  So this CPU yields the rest of its quantum, and the spinner's retry
    comes first (without this, the CPU that released would take the lock again at its
    next hit, and a CPU that hits probes often would starve the others)."""
    if machine.ncpus > 1 and any(k.spinning for k in engine.ctlblks):
        machine.smp.end_quantum()

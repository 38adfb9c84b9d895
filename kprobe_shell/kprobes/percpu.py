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


class KprobeCtlblk:
    """struct kprobe_ctlblk: one CPU's kprobe state (and its jprobe save area)."""

    __slots__ = (
        "current_kprobe", "kprobe_status", "kprobe_saved_rflags", "kprobe_old_rflags",
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

"""Return probes after the June 2005 redesign.

A kretprobe is a kprobe at a function's entry whose pre_handler (pre_handler_kretprobe ->
arch_prepare_kretprobe) takes a free kretprobe_instance, records the task and the real
return address, and overwrites the return address on the stack with
&kretprobe_trampoline.  Instances in flight sit in kretprobe_inst_table, 64 buckets keyed
by the task pointer.  A kprobe on the trampoline (trampoline_probe_handler) walks the
current task's bucket when the function returns, calls each instance's handler, recycles
it, and stops at the first whose return address is not the trampoline.  When a task
exits, kprobe_flush_task recycles its instances (their functions never returned).

Task exit: the guest calls kprobe_flush_task from exit_thread (as 2.6.12); the engine
flushes again when the task is reaped (release_task), which catches the instance of the
dying task's last schedule() that 2005 leaked.

The seed's flaw, reproducible with `unsafe=True`: the 2005 kernel flushed on exec too
(flush_thread), so a return probe on the exec path loses its instance and the trampoline
finds none: the kernel hit BUG_ON, the machine stops with StopReason.BUG.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..machine import StopReason
from ..machine.layout import STUB_PAGE
from .core import EXEC_PATH_PATTERNS, EXIT_PATH_PATTERNS, KPROBE_TABLE_SIZE, Kprobe, ProbeError, hash_ptr

if TYPE_CHECKING:
    from .core import KprobeEngine

NR_CPUS = 1
#: The kernel's default maxactive with CONFIG_PREEMPT: max(10, 2 * NR_CPUS).
DEFAULT_MAXACTIVE = max(10, 2 * NR_CPUS)
#: The most instances one return probe may have (ftrace's limit, KRETPROBE_MAXACTIVE_MAX).
MAXACTIVE_MAX = 4096


@dataclass(eq=False)
class KretprobeInstance:
    """struct kretprobe_instance: one call in flight."""

    rp: "Kretprobe | None"
    index: int  # which of rp's instances (for display)
    ret_addr: int = 0
    task: int = 0  # the task_struct pointer
    stack_slot: int = 0  # where on the stack the return address was replaced
    entry_time_ns: int = 0
    data: dict = field(default_factory=dict)  # entry_handler -> handler scratch space

    def __repr__(self) -> str:
        return f"<kretprobe_instance {self.index} of {self.rp!r} task=0x{self.task:x} ret=0x{self.ret_addr:x}>"


class Kretprobe:
    """struct kretprobe: a return probe and its pool of instances."""

    kind = "r"

    def __init__(
        self,
        symbol_name: str | None = None,
        handler: Callable | None = None,
        maxactive: int = 0,
        *,
        addr: int | None = None,
        entry_handler: Callable | None = None,
        unsafe: bool = False,
        name: str | None = None,
    ):
        self.kp = Kprobe(symbol_name, 0, addr=addr, pre_handler=self._pre_handler_kretprobe, name=name)
        self.kp._owner = self
        self.handler = handler
        self.entry_handler = entry_handler
        self.maxactive = maxactive if maxactive > 0 else DEFAULT_MAXACTIVE
        self.requested_maxactive = maxactive
        self.unsafe = unsafe
        self.name = name
        self.nmissed = 0
        self.missed_in_place = 0  # entry hits lost to an in-place step window (SMP)
        self.faults = 0
        self.hits = 0  # returns handled
        self.free_instances: list[KretprobeInstance] = []
        self.used_instances: list[KretprobeInstance] = []
        self.number: int | None = None
        self.manager: "KretprobeManager | None" = None
        self.internal = False

    def __repr__(self) -> str:
        return f"<Kretprobe {self.symbol_name or hex(self.addr or 0)}>"

    # The kprobe's identity, for listing.
    symbol_name = property(lambda self: self.kp.symbol_name)
    addr = property(lambda self: self.kp.addr)
    offset = property(lambda self: 0)
    disabled = property(lambda self: self.kp.disabled)
    registered = property(lambda self: self.manager is not None)
    owner = property(lambda self: self)

    @property
    def mode(self) -> str:
        return self.kp.mode

    def _pre_handler_kretprobe(self, p: Kprobe, regs) -> int:
        self.manager.arch_prepare_kretprobe(self, regs)
        return 0


class KretprobeManager:
    """kretprobe_inst_table, the trampoline probe, and kprobe_flush_task."""

    def __init__(self, engine: "KprobeEngine"):
        self.engine = engine
        machine = engine.machine
        self.kretprobe_inst_table: list[list[KretprobeInstance]] = [[] for _ in range(KPROBE_TABLE_SIZE)]
        syms = machine.image.symbols
        tramp = syms.get("kretprobe_trampoline")
        if tramp is not None:
            self.trampoline = tramp.address
            self.trampoline_provided = False
        else:
            # The image has none: the machine provides a one-nop trampoline in its stub page.
            self.trampoline = STUB_PAGE
            machine.write(STUB_PAGE, b"\x90")
            self.trampoline_provided = True
        # The trampoline's int3 stands for no guest instruction: when it is counted (it is
        # in the image's text), take it off the clock again.
        self._trampoline_counted = machine.image.is_text(self.trampoline)
        tp = Kprobe(addr=self.trampoline, pre_handler=self.trampoline_probe_handler, name="kretprobe_trampoline")
        tp.internal = True
        self.trampoline_probe = tp
        self._register_trampoline_probe(tp)
        self.kretprobes: list[Kretprobe] = []
        flush = syms.get("kprobe_flush_task")
        if flush is not None:
            machine.add_code_hook(flush.address, self._on_kprobe_flush_task)
        # 2005 flushes in exit_thread, but the dying task still calls schedule() after that,
        # and a return probe there would leave an instance behind for a task that never runs
        # again.  Later kernels flush after the dead task's last switch; we flush once more
        # when the task is reaped (release_task), which is after that switch.
        release = syms.get("release_task")
        if release is not None:
            machine.add_code_hook(release.address, self._on_kprobe_flush_task)

    def _register_trampoline_probe(self, tp: Kprobe) -> None:
        """register_kprobe(&trampoline_p) without the user-facing refusals."""
        from .x86 import decode_at

        engine = self.engine
        insn = decode_at(engine.machine.read(self.trampoline, 15), self.trampoline)
        tp.addr = self.trampoline
        tp.engine = engine
        tp.ainsn, tp.opcode = insn, insn.raw[0]
        engine.kprobe_table[hash_ptr(tp.addr)].append(tp)
        engine.arm_kprobe(tp)

    # ------------------------------------------------------------------ register
    def register_kretprobe(self, rp: Kretprobe) -> Kretprobe:
        if rp.manager is not None:
            raise ProbeError(f"{rp!r} is already registered")
        if rp.maxactive > MAXACTIVE_MAX:
            # [robustness fix] each instance is an object: maxactive=10**11 ran out of memory.
            raise ProbeError(f"maxactive {rp.maxactive} is too big (at most {MAXACTIVE_MAX})")
        addr = self.engine.resolve(rp.kp)
        sym = self.engine.machine.image.symbols.containing(addr)
        name = sym[0].name if sym else hex(addr)
        if sym and sym[1] != 0:
            raise ProbeError(f"a return probe goes on a function's entry, not {name}+0x{sym[1]:x}")
        if not rp.unsafe and any(fnmatch.fnmatchcase(name, pat) for pat in EXEC_PATH_PATTERNS):
            raise ProbeError(
                f"refusing a return probe on {name}: it is on the exec path, where the 2005 kernel "
                "flushes the task's return-probe instances (flush_thread -> kprobe_flush_task) while "
                f"{name} is still running, so its return would find no instance (BUG). "
                "Use --unsafe (unsafe=True) to watch that happen."
            )
        if not rp.unsafe and any(fnmatch.fnmatchcase(name, pat) for pat in EXIT_PATH_PATTERNS):
            raise ProbeError(
                f"refusing a return probe on {name}: the 2005 kernel flushes a dying task's return-probe "
                f"instances from exit_thread (-> kprobe_flush_task) while {name} is still running, so its "
                "return would find no instance (BUG); later kernels flush after the task's last switch. "
                "Use --unsafe (unsafe=True) to watch that happen."
            )
        rp.free_instances = [KretprobeInstance(rp, i) for i in range(rp.maxactive)]
        rp.used_instances = []
        rp.manager = self
        try:
            self.engine.register_kprobe(rp.kp)
        except ProbeError:
            rp.manager = None
            raise
        self.kretprobes.append(rp)
        return rp

    def unregister_kretprobe(self, rp: Kretprobe) -> None:
        """The kprobe goes; free instances go; calls in flight return without a handler."""
        if rp.manager is not self:
            raise ProbeError(f"{rp!r} is not registered")
        self.engine.unregister_kprobe(rp.kp)
        rp.free_instances = []
        for ri in rp.used_instances:
            ri.rp = None
        rp.used_instances = []
        rp.manager = None
        self.kretprobes.remove(rp)

    # ------------------------------------------------------------------ entry
    def arch_prepare_kretprobe(self, rp: Kretprobe, regs) -> None:
        machine = self.engine.machine
        if not rp.free_instances:
            rp.nmissed += 1
            self.engine.say(lambda: f"pre_handler_kretprobe of probe {rp.number or rp!r}: no free instance (all "
                            f"{rp.maxactive} of maxactive in flight), so this call is not traced: nmissed = {rp.nmissed}")
            return
        ri = rp.free_instances.pop(0)
        rsp = machine.reg("rsp")
        ri.rp = rp
        ri.task = machine.tasks.current_address()
        ri.ret_addr = machine.read_u64(rsp)
        ri.stack_slot = rsp
        ri.entry_time_ns = machine.time_ns
        ri.data = {}
        if rp.entry_handler is not None:
            self.engine._call(rp.kp, "entry_handler", rp.entry_handler, ri, regs)
        machine.write_u64(rsp, self.trampoline)
        # add_rp_inst: to the head of the task's bucket and of the probe's used list.
        self.kretprobe_inst_table[hash_ptr(ri.task)].insert(0, ri)
        rp.used_instances.insert(0, ri)
        self.engine.say(lambda: (lambda task: (
            f"arch_prepare_kretprobe: probe {rp.number or rp!r} takes instance #{ri.index} "
            f"({len(rp.used_instances)} used, {len(rp.free_instances)} free) for "
            f"{task.label if task else hex(ri.task)}; the return address at stack slot 0x{rsp:x}, "
            f"0x{ri.ret_addr:x} ("
            + ("kretprobe_trampoline: another return probe got there first"
               if ri.ret_addr == self.trampoline else machine.image.symbols.format(ri.ret_addr))
            + f"), is saved in the instance and replaced by kretprobe_trampoline 0x{self.trampoline:x}; "
            f"instance at the head of kretprobe_inst_table[{hash_ptr(ri.task)}]"))(machine.tasks.read_task(ri.task)))

    # ------------------------------------------------------------------ return
    def trampoline_probe_handler(self, p: Kprobe, regs) -> int:
        engine = self.engine
        machine = engine.machine
        if self._trampoline_counted:
            machine.adjust_clock(-1)
        task = machine.tasks.current_address()
        head = self.kretprobe_inst_table[hash_ptr(task)]
        engine.say(lambda: f"trampoline_probe_handler: walking kretprobe_inst_table[{hash_ptr(task)}] "
                   f"({len(head)} instance(s)) for the instances of "
                   f"{(machine.tasks.read_task(task) or machine.tasks.pseudo).label} (task_struct 0x{task:x}), newest first")
        orig_ret_address = 0
        consumed = 0
        for ri in list(head):
            if ri.task != task:
                continue
            rp = ri.rp
            engine.say(lambda: f"  instance #{ri.index} of probe {rp.number or rp!r} "
                       f"({machine.image.symbols.containing(rp.addr)[0].name}): ret_addr 0x{ri.ret_addr:x} "
                       + ("(kretprobe_trampoline: keep walking)" if ri.ret_addr == self.trampoline else
                          f"({machine.image.symbols.format(ri.ret_addr)})")
                       + (f"; calling its handler, rax = 0x{machine.reg('rax'):x}" if rp.handler is not None else "")
                       if rp is not None else
                       f"  an instance of an unregistered probe: ret_addr 0x{ri.ret_addr:x}, no handler")
            if rp is not None and rp.handler is not None:
                rp.hits += 1
                # The handler sees where the function really returns to.
                engine._call(rp.kp, "handler", rp.handler, ri, regs)
            elif rp is not None:
                rp.hits += 1
            orig_ret_address = ri.ret_addr
            self.recycle_rp_inst(ri)
            consumed += 1
            if orig_ret_address != self.trampoline:
                break
        engine.current_kprobe = None
        engine.kprobe_status = None
        if not orig_ret_address:
            cur = machine.tasks.current()
            who = cur.label if cur else f"task 0x{task:x}"
            machine.stop_guest(
                machine._event(
                    StopReason.BUG,
                    f"kernel BUG at kretprobe_trampoline: {who} returned through the trampoline but "
                    "has no return-probe instance (BUG_ON(!orig_ret_address)); its instances were "
                    "flushed while the probed function was still running",
                )
            )
            return 1
        machine.set_reg("rip", orig_ret_address)
        engine.say(lambda: f"trampoline: {consumed} instance(s) consumed and recycled; rip = 0x{orig_ret_address:x} "
                   f"({machine.image.symbols.format(orig_ret_address)}), the real return address; no single-step")
        return 1

    def recycle_rp_inst(self, ri: KretprobeInstance) -> None:
        bucket = self.kretprobe_inst_table[hash_ptr(ri.task)]
        bucket.remove(ri)
        if ri.rp is not None:
            ri.rp.used_instances.remove(ri)
            ri.rp.free_instances.append(ri)

    # ------------------------------------------------------------------ task exit
    def _on_kprobe_flush_task(self, machine) -> None:
        self.kprobe_flush_task(machine.reg("rdi"))

    def kprobe_flush_task(self, task: int) -> int:
        """Recycle every instance of a task (its functions will never return)."""
        flushed = [ri for ri in self.kretprobe_inst_table[hash_ptr(task)] if ri.task == task]
        for ri in flushed:
            self.recycle_rp_inst(ri)
        if flushed:
            # Called at the entry of the guest's kprobe_flush_task (or release_task): the word at
            # rsp is the return address, which says who flushed (exit_thread, or flush_thread on exec).
            self.engine.say(lambda m=self.engine.machine: (
                f"kprobe_flush_task({(m.tasks.read_task(task) or m.tasks.pseudo).label}, task_struct 0x{task:x}) "
                f"called from {m.image.symbols.format(m.read_u64(m.reg('rsp')))}: the task's {len(flushed)} "
                f"instance(s) in kretprobe_inst_table[{hash_ptr(task)}] are recycled without calling their handlers "
                "(those functions are not expected to return): " + "; ".join(
                    f"instance #{ri.index} of probe {ri.rp.number if ri.rp else '-'}, ret_addr 0x{ri.ret_addr:x}"
                    for ri in flushed)))
            self.engine._emit(FlushEvent(task, flushed))
        return len(flushed)

    # ------------------------------------------------------------------ views
    def instances_by_task(self) -> list[tuple[int, int, list[KretprobeInstance]]]:
        """(bucket, task, instances newest first) for every task with calls in flight."""
        out = []
        for b, bucket in enumerate(self.kretprobe_inst_table):
            tasks: dict[int, list[KretprobeInstance]] = {}
            for ri in bucket:
                tasks.setdefault(ri.task, []).append(ri)
            out.extend((b, task, ris) for task, ris in tasks.items())
        return out

    def real_return_address(self, task: int, depth: int) -> int | None:
        """The depth-th hijacked return address of task (for backtraces): newest first."""
        ris = [ri for ri in self.kretprobe_inst_table[hash_ptr(task)] if ri.task == task]
        return ris[depth].ret_addr if depth < len(ris) else None

    def check_invariants(self) -> list[str]:
        problems = []
        machine = self.engine.machine
        live = {t.address for t in machine.tasks.all()}
        for b, bucket in enumerate(self.kretprobe_inst_table):
            for ri in bucket:
                if hash_ptr(ri.task) != b:
                    problems.append(f"{ri!r} sits in bucket {b}, not its task's")
                if ri.task not in live:
                    problems.append(f"{ri!r} belongs to a task that no longer exists")
        for rp in self.kretprobes:
            if len(rp.free_instances) + len(rp.used_instances) != rp.maxactive:
                problems.append(
                    f"{rp!r}: free {len(rp.free_instances)} + used {len(rp.used_instances)} != maxactive {rp.maxactive}"
                )
        return problems


@dataclass
class FlushEvent:
    task: int
    instances: list

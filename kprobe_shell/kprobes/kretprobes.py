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

The kretprobe booster (the kernel's 2.6.25 assembly trampoline, here the fast path of
kprobe-modes auto and optimize): instead of the trampoline's int3, the return address
planted is a `ret` in the tool's stub page with a code hook on it.  The hook runs the
same trampoline handler, then pushes the real return address back where the function
popped the trampoline's (so the stack below rsp holds what an unprobed run leaves
there) and lets the `ret` take it: one host transition, no trap, no write to rip, and
nothing counted on the guest's clock (the stub page is not the image's text).  The
int3 trampoline stays armed, so calls in flight across a mode change return either way.
On SMP the booster's hook is on every CPU (it works on the CPU that runs it, and a hook
is never interrupted by another CPU: they are interleaved), and it keeps the 2005
serialisation: when another CPU holds kprobe_lock, it sends the return through the int3
trampoline, whose trap waits for the lock.

The instances, each kretprobe's free and used lists and kretprobe_inst_table live in C
(_kstate.c's InstanceTable), where the C probe hit (tracing/_hit.c) takes and recycles
them too: KretprobeInstance, free_instances, used_instances and kretprobe_inst_table are
views over that one table.

The seed's flaw, reproducible with `unsafe=True`: the 2005 kernel flushed on exec too
(flush_thread), so a return probe on the exec path loses its instance and the trampoline
finds none: the kernel hit BUG_ON, the machine stops with StopReason.BUG.
"""
from __future__ import annotations

import ctypes
import fnmatch
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..display import Displayed
from ..machine import MachineError, StopReason, capi
from ..machine.layout import STUB_PAGE
from ..machine.tasks import PSEUDO_TASK_ADDR
from ..machine.registers import REGISTERS
from ._kstate import F_BUCKET, F_TASK, L_BUCKET, L_FREE, L_USED, InstanceTable, InstanceView
from .chits import CReturns
from .fastpath import make_booster_push_failed, make_kretprobe_booster, make_lone_kretprobe_entry
from .narrate import (
    InstancesFlushed,
    InstanceWalked,
    KretprobeEntry,
    KretprobeMissed,
    TrampolineReturned,
    TrampolineWalk,
)
from .x86 import decode_at
from .types import (BOOSTED_MODES, EXEC_PATH_PATTERNS, EXIT_PATH_PATTERNS, KPROBE_TABLE_SIZE, Kprobe, ProbeError,
                    SplitCount, hash_ptr)

#: Where the kretprobe booster's `ret` stands in the machine's stub page.
BOOSTER_OFFSET = 0x40

if TYPE_CHECKING:
    from .core import KprobeEngine

NR_CPUS = 1
#: The kernel's default maxactive with CONFIG_PREEMPT: max(10, 2 * NR_CPUS).
DEFAULT_MAXACTIVE = max(10, 2 * NR_CPUS)
#: The most instances one return probe may have (ftrace's limit, KRETPROBE_MAXACTIVE_MAX).
MAXACTIVE_MAX = 4096


class KretprobeInstance(InstanceView, Displayed):
    """struct kretprobe_instance: one call in flight.  Its fields (index, ret_addr, task,
    stack_slot: InstanceView's) and the lists it is on live in its manager's
    InstanceTable (_kstate.c), where C code at a probe hit takes and recycles instances
    too; this object stands for it (one per instance, made with it), and keeps the
    handlers' scratch space (data)."""

    __slots__ = ("_mgr", "data")

    def __init__(self, rp: "Kretprobe", index: int, *, manager: "KretprobeManager | None" = None):
        self._mgr = manager if manager is not None else rp.manager
        self.data: dict = {}  # entry_handler -> handler scratch space
        self._table = self._mgr._table
        self._id = self._mgr._new_instance(self, rp, index)
        self.rp = rp

    @property
    def bucket(self) -> "InstanceList | None":
        """Its bucket of kretprobe_inst_table while in use."""
        b = self._table.get(self._id, F_BUCKET)
        return self._mgr.kretprobe_inst_table[b] if b >= 0 else None

    def __repr__(self) -> str:
        return f"<kretprobe_instance {self.index} of {self.rp!r} task=0x{self.task:x} ret=0x{self.ret_addr:x}>"


class InstanceList:
    """One list of a manager's InstanceTable (a kretprobe's free or used list, a bucket of
    kretprobe_inst_table) seen as the Python list of instances it stands for, head first;
    changing it changes the table."""

    __slots__ = ("_mgr", "_kind", "_owner")

    def __init__(self, mgr: "KretprobeManager", kind: int, owner: int):
        self._mgr, self._kind, self._owner = mgr, kind, owner

    def _ids(self) -> tuple:
        return self._mgr._table.items(self._kind, self._owner)

    def _list(self) -> list:
        instances = self._mgr._instances
        return [instances[i] for i in self._ids()]

    def __len__(self) -> int:
        return self._mgr._table.length(self._kind, self._owner)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self):
        return iter(self._list())

    def __getitem__(self, k):
        return self._list()[k]

    def __contains__(self, ri) -> bool:
        return any(ri is x for x in self._list())

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, InstanceList)):
            return self._list() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._list())

    def append(self, ri: KretprobeInstance) -> None:
        self._mgr._table.link(self._kind, self._owner, ri._id, -1)

    def insert(self, position: int, ri: KretprobeInstance) -> None:
        ids = self._ids()
        position = max(0, position + len(ids)) if position < 0 else position
        self._mgr._table.link(self._kind, self._owner, ri._id, ids[position] if position < len(ids) else -1)

    def pop(self, position: int = -1) -> KretprobeInstance:
        i = self._ids()[position]
        self._mgr._table.unlink(self._kind, i)
        return self._mgr._instances[i]

    def remove(self, ri: KretprobeInstance) -> None:
        if self._mgr._table.owner(self._kind, ri._id) != self._owner:
            raise ValueError(f"{ri!r} is not in the list")
        self._mgr._table.unlink(self._kind, ri._id)

    def clear(self) -> None:
        for i in self._ids():
            self._mgr._table.unlink(self._kind, i)


class Kretprobe(Displayed):
    """struct kretprobe: a return probe and its pool of instances."""

    kind = "r"
    #: How its return events record in C at the booster (kprobes/chits.py's CRecord, set
    #: by whoever made its handler), None: its returns run the Python booster.
    c_record = None

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
        # Calls missed for want of a free instance, counted by the Python paths and by the
        # C entry (SplitCount).
        self.python_nmissed = 0
        self.c_nmissed = ctypes.c_int64(0)
        self.missed_in_place = 0  # entry hits lost to an in-place step window (SMP)
        self.faults = 0
        # Returns handled, counted by the Python paths and by the C booster (SplitCount).
        self.python_hits = 0
        self.c_hits = ctypes.c_int64(0)
        self.number: int | None = None
        self.manager: "KretprobeManager | None" = None
        self._rp_id = -1  # its number in its manager's InstanceTable
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

    nmissed = SplitCount()  # calls missed: maxactive exhausted, or a probe running
    hits = SplitCount()  # returns handled

    @property
    def free_instances(self) -> "InstanceList | list":
        """Its free instances, next taken first (none while not registered)."""
        return InstanceList(self.manager, L_FREE, self._rp_id) if self.manager is not None else []

    @free_instances.setter
    def free_instances(self, instances) -> None:
        self._set_list(L_FREE, instances)

    @property
    def used_instances(self) -> "InstanceList | list":
        """Its instances in flight, newest first."""
        return InstanceList(self.manager, L_USED, self._rp_id) if self.manager is not None else []

    @used_instances.setter
    def used_instances(self, instances) -> None:
        self._set_list(L_USED, instances)

    def _set_list(self, kind: int, instances) -> None:
        if self.manager is None:
            return
        view = InstanceList(self.manager, kind, self._rp_id)
        view.clear()
        for ri in instances:
            view.append(ri)

    def _pre_handler_kretprobe(self, p: Kprobe, regs) -> int:
        """pre_handler_kretprobe (replaced at registration by the manager's, bound to this
        probe: one Python frame less on every hit)."""
        self.manager.arch_prepare_kretprobe(self, regs)
        return 0


class KretprobeManager:
    """kretprobe_inst_table, the trampoline probe, and kprobe_flush_task."""

    def __init__(self, engine: "KprobeEngine"):
        self.engine = engine
        self.machine = machine = engine.machine
        # Constants of the hot paths, looked up once: the register view, and on one CPU
        # its kprobe_ctlblk (on SMP the booster asks for the running CPU's each time).
        self._regs = engine.regs
        self._shown_ip = engine.regs.shown_ip
        self._smp = machine.ncpus > 1
        self._kcb0 = engine.ctlblks[0]
        # Without kernel tasks (a freestanding image) the current task is always the
        # machine's pseudo task: no call to ask for it (0: ask, TaskView.current_address).
        self._fixed_task = PSEUDO_TASK_ADDR if machine.tasks.layout is None else 0
        # The instances, the kretprobes' free and used lists and kretprobe_inst_table (see
        # _kstate.c); _instances and _rps: the objects that stand for its numbers.
        self._table = InstanceTable()
        self._instances: list[KretprobeInstance] = []
        self._rps: list[Kretprobe] = []
        self.kretprobe_inst_table = [InstanceList(self, L_BUCKET, b) for b in range(KPROBE_TABLE_SIZE)]
        self._consumed = 0  # instances the last trampoline walk consumed (narration)
        self._last_consumed: KretprobeInstance | None = None  # the instance whose ret_addr was 0
        self._flushed_tasks: set[int] = set()  # tasks kprobe_flush_task recycled instances of
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
        # The booster: a `ret` the hook fires on (see the module docs).
        self.booster = STUB_PAGE + BOOSTER_OFFSET
        machine.write(self.booster, b"\xc3")
        self.kretprobes: list[Kretprobe] = []
        # Its hook is C (chits.CReturns): it handles the returns whose events record in C
        # and calls the Python booster for the others.
        self.c_returns = CReturns(self, make_kretprobe_booster(self), make_booster_push_failed(self))
        self.c_returns.install()
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

    def _new_instance(self, ri: KretprobeInstance, rp: "Kretprobe | None", index: int) -> int:
        number = self._table.new_instance(rp._rp_id if rp is not None else -1, index)
        self._instances.append(ri)
        return number

    def _register_trampoline_probe(self, tp: Kprobe) -> None:
        """register_kprobe(&trampoline_p) without the user-facing refusals."""
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
            # Each instance is an object: a huge maxactive would exhaust the host's memory.
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
        rp.manager = self
        rp._rp_id = self._table.new_kretprobe()
        self._rps.append(rp)
        rp.free_instances = [KretprobeInstance(rp, i) for i in range(rp.maxactive)]
        # pre_handler_kretprobe -> arch_prepare_kretprobe(rp, regs); its None is the 0 that
        # lets the probed instruction run.
        rp.kp.pre_handler = functools.partial(self._arch_prepare_kretprobe_hit, rp)
        # It guards the entry_handler itself and catches its own failures (see
        # _arch_prepare_kretprobe_hit), so the optimized path calls it directly.
        rp.kp.engine_pre_handler = True
        rp.kp.fast_entry = make_lone_kretprobe_entry(self, rp)
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
        self._arch_prepare_kretprobe_hit(rp, rp.kp, regs)

    def _arch_prepare_kretprobe_hit(self, rp: Kretprobe, p: Kprobe, regs) -> None:
        """arch_prepare_kretprobe, as the probe's pre_handler (p is rp's kprobe).
        A hot path (every call of the function): no allocation, C accessors only, and
        the manager's constants in locals.

        The optimized path calls it without KprobeEngine._call (Kprobe.engine_pre_handler):
        it runs the user's entry_handler through _call itself, and a failure of its own
        (the stack not mapped) is reported as _call would (charged to rp, the probed
        instruction runs)."""
        engine = self.engine
        try:
            machine = self.machine
            table = self._table
            i = table.take(rp._rp_id)
            if i < 0:
                rp.python_nmissed += 1
                if engine.narrator is not None:
                    engine.narrate(KretprobeMissed(rp, rp.maxactive, rp.nmissed))
                return
            ri = self._instances[i]
            task = self._fixed_task or machine.tasks.current_address()
            if ri.data:
                ri.data.clear()
            tramp = self.booster if engine.mode in BOOSTED_MODES else self.trampoline
            entry_handler = rp.entry_handler
            if entry_handler is None:
                # One call: read the return address at rsp and put the trampoline's there
                # (machine.exchange_top_of_stack without its Python frame).
                try:
                    rsp, ret_addr = capi.exchange_top_of_stack(machine.uch, REGISTERS["rsp"], tramp)
                except capi.AccessError:
                    table.set(i, F_TASK, task)
                    raise MachineError("cannot exchange the top of the stack: not mapped") from None
                # add_rp_inst: to the head of the task's bucket and of the probe's used list.
                table.add(i, task, ret_addr, rsp)
            else:
                # The entry_handler sees the stack as the function was entered.
                ri.task = task
                ri.stack_slot = rsp = machine.reg("rsp")
                ri.ret_addr = machine.read_u64(rsp)
                engine._call(rp.kp, "entry_handler", entry_handler, ri, regs)
                machine.write_stack_u64(rsp, tramp)  # the stack is not code: no translation-cache check
                table.add_rp_inst(i)
            if engine.narrator is not None:
                self._narrate_entry(rp, ri, rsp, tramp)
        except BaseException as exc:  # noqa: BLE001 - as KprobeEngine._call: the probe path completes
            engine._handler_failed(rp.kp, "pre_handler", exc)

    def _narrate_entry(self, rp: Kretprobe, ri: KretprobeInstance, rsp: int, tramp: int) -> None:
        task = self.machine.tasks.read_task(ri.task)
        self.engine.narrate(KretprobeEntry(
            rp, ri.index, len(rp.used_instances), len(rp.free_instances), task.label if task else hex(ri.task),
            rsp, ri.ret_addr, self.is_trampoline(ri.ret_addr), tramp, tramp != self.trampoline, self.engine.mode,
            hash_ptr(ri.task)))

    # ------------------------------------------------------------------ return
    def is_trampoline(self, addr: int) -> bool:
        """A return address planted by a kretprobe (the int3 trampoline or the booster)."""
        return addr == self.trampoline or addr == self.booster

    def _run_return_handlers(self, task: int, regs) -> int:
        """The heart of trampoline_probe_handler: the current task's instances, newest
        first, until the first whose return address is not a trampoline; each one's
        handler runs and it is recycled.  Returns that real return address (0: none)."""
        engine = self.engine
        table, instances = self._table, self._instances
        narrate = engine.narrator is not None
        trampoline, booster = self.trampoline, self.booster
        if narrate:
            self._narrate_walk(task, self.kretprobe_inst_table[hash_ptr(task)])
        orig_ret_address = 0
        consumed = 0
        last = None
        call = engine._call
        while (i := table.first(task, 0)) >= 0:
            # The task's newest instance: the ones before it were recycled, which takes
            # them out of the bucket.
            ri = instances[i]
            rp = ri.rp
            if narrate:
                self._narrate_instance(ri, rp)
            consumed += 1
            last = ri
            if rp is not None:
                rp.python_hits += 1
                handler = rp.handler
                if handler is not None:
                    # The handler sees where the function really returns to.
                    call(rp.kp, "handler", handler, ri, regs)
            orig_ret_address = ri.ret_addr
            # recycle_rp_inst: out of its bucket and back to its probe's free list (if it
            # still has one: the handler may have unregistered the probe, which leaves its
            # instances in flight without one).
            table.recycle(i)
            if orig_ret_address != trampoline and orig_ret_address != booster:
                break
        self._consumed = consumed  # for the narration
        self._last_consumed = last if consumed and not orig_ret_address else None  # for the BUG report
        return orig_ret_address

    # Narration, out of line: _run_return_handlers is a hot path.
    def _narrate_walk(self, task: int, head: list) -> None:
        label = (self.machine.tasks.read_task(task) or self.machine.tasks.pseudo).label
        self.engine.narrate(TrampolineWalk(hash_ptr(task), len(head), task, label))

    def _narrate_instance(self, ri: KretprobeInstance, rp: "Kretprobe | None") -> None:
        rax = self.machine.reg("rax") if rp is not None and rp.handler is not None else None
        self.engine.narrate(InstanceWalked(ri.index, rp, ri.ret_addr, self.is_trampoline(ri.ret_addr), rax))

    def _no_instance_bug(self, task: int, zeroed: "KretprobeInstance | None") -> None:
        """BUG_ON(!orig_ret_address), saying why there was no address to return to."""
        machine = self.engine.machine
        cur = machine.tasks.current()
        who = cur.label if cur else f"task 0x{task:x}"
        if zeroed is not None:
            number = zeroed.rp.number if zeroed.rp is not None and zeroed.rp.number else "-"
            why = (f"a return handler of probe {number} set ri.ret_addr to 0, so {who} has no address to "
                   "return to")
        elif task in self._flushed_tasks:
            why = (f"{who} returned through the trampoline but has no return-probe instance; its instances "
                   "were flushed while the probed function was still running")
        else:
            why = (f"{who} jumped into kretprobe_trampoline (0x{self.trampoline:x}, the tool's stub page) "
                   "with no return-probe instance: no probed function returned there")
        machine.stop_guest(machine.stop_event(StopReason.BUG, f"kernel BUG at kretprobe_trampoline: {why} "
                                              "(BUG_ON(!orig_ret_address))"))

    def trampoline_probe_handler(self, p: Kprobe, regs) -> int:
        engine = self.engine
        machine = engine.machine
        if self._trampoline_counted:
            machine.clock.adjust(-1)
        task = machine.tasks.current_address()
        orig_ret_address = self._run_return_handlers(task, regs)
        engine.current_kprobe = None
        engine.kprobe_status = None
        if not orig_ret_address:
            self._no_instance_bug(task, self._last_consumed)
            return 1
        machine.set_reg("rip", orig_ret_address)
        if engine.narrator is not None:
            engine.narrate(TrampolineReturned(self._consumed, orig_ret_address))
        return 1

    def recycle_rp_inst(self, ri: KretprobeInstance) -> None:
        self._table.recycle(ri._id)

    # ------------------------------------------------------------------ task exit
    def _on_kprobe_flush_task(self, machine) -> None:
        self.kprobe_flush_task(machine.reg("rdi"))

    def kprobe_flush_task(self, task: int) -> int:
        """Recycle every instance of a task (its functions will never return)."""
        flushed = [self._instances[i] for i in self._table.flush(task)]
        if flushed:
            self._flushed_tasks.add(task)  # a later return without an instance is explained
            if self.engine.narrator is not None:
                self._narrate_flush(task, flushed)
            self.engine._emit(FlushEvent(task, flushed))
        return len(flushed)

    def _narrate_flush(self, task: int, flushed: list[KretprobeInstance]) -> None:
        # Called at the entry of the guest's kprobe_flush_task (or release_task): the word at
        # rsp is the return address, which says who flushed (exit_thread, or flush_thread on exec).
        m = self.machine
        self.engine.narrate(InstancesFlushed(
            task, (m.tasks.read_task(task) or m.tasks.pseudo).label, m.read_u64(m.reg("rsp")), hash_ptr(task),
            tuple((ri.index, ri.rp, ri.ret_addr) for ri in flushed)))

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

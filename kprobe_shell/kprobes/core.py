"""The architecture-independent kprobes core (kernel/kprobes.c) and its trap entry points.

Names follow the kernel so the two can be read side by side: kprobe_table (64 buckets
hashed by address), register_kprobe / unregister_kprobe, aggregate probes
(aggr_pre_handler and friends), kprobe_handler (the int3 trap), post_kprobe_handler (the
debug trap after the single-step), kprobe_fault_handler, kprobe_running and
kprobe_status.  The engine never prints: it calls handlers and reports through
`listeners` (handler errors, narration for `explain`).
"""
from __future__ import annotations

import enum
import traceback
from dataclasses import dataclass
from typing import Callable

from ..machine import Machine, StopEvent, StopReason
from ..machine.layout import EFLAGS_IF, EFLAGS_TF, RESERVED_BASE, RESERVED_END
from .percpu import KprobeCtlblk, per_cpu
from .guard import HandlerGuard, HandlerInterrupted, HandlerTimeout, guarded_caller
from .regs import PtRegs
from .x86 import (
    BREAKPOINT_INSTRUCTION,
    DecodedInsn,
    InsnSlots,
    ProbeError,
    copy_for_slot,
    decode_at,
    jmp_rel32,
)

KPROBE_HASH_BITS = 6
KPROBE_TABLE_SIZE = 1 << KPROBE_HASH_BITS
GOLDEN_RATIO_PRIME_64 = 0x9E37FFFFFFFC0001  # include/linux/hash.h, 2.6


def hash_ptr(value: int, bits: int = KPROBE_HASH_BITS) -> int:
    """The kernel's hash_long() for 64-bit pointers (2.6 include/linux/hash.h)."""
    return ((value * GOLDEN_RATIO_PRIME_64) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)


class KprobeStatus(enum.Enum):
    HIT_ACTIVE = "KPROBE_HIT_ACTIVE"    # pre-handlers running (or a jprobe handler in the guest)
    HIT_SS = "KPROBE_HIT_SS"            # single-stepping the copy
    HIT_SSDONE = "KPROBE_HIT_SSDONE"    # post-handlers running
    REENTER = "KPROBE_REENTER"          # stepping a probe hit while another was running


#: How a probe gets past its instruction (see `set kprobe-mode`); "auto" (the default) is
#: the fastest that is safe for each probe: optimized, else boosted, else single-stepped.
#: "optimize" picks the same per probe, for teaching: `probes` then says why a probe
#: could not be optimized.
MODES = ("single-step", "boost", "optimize")

#: Where the probed instruction is single-stepped (see `set kprobe-step`): out of line in
#: its slot, as the kernel does; or in place (the original byte put back, the instruction
#: stepped at its own address, the int3 planted again), as early naive implementations did,
#: which lets other CPUs run through the probe unseen while the byte is back.
STEP_MODES = ("out-of-line", "in-place")


class Kprobe:
    """struct kprobe: a probe on one instruction, with its handlers and counters."""

    kind = "k"
    #: True when pre_handler is the engine's own code (a kretprobe's entry,
    #: arch_prepare_kretprobe), which runs the user's entry_handler through
    #: KprobeEngine._call itself and reports its own failures as _call would: the
    #: optimized path calls it directly, without a second guard around it.
    engine_pre_handler = False
    #: A kretprobe's entry, when the optimized path can take a shorter way (see
    #: KretprobeManager._make_fast_entry): fast_entry(kcb) -> True when it did the hit.
    fast_entry = None

    def __init__(
        self,
        symbol_name: str | None = None,
        offset: int = 0,
        *,
        addr: int | None = None,
        pre_handler: Callable | None = None,
        post_handler: Callable | None = None,
        fault_handler: Callable | None = None,
        break_handler: Callable | None = None,
        name: str | None = None,
    ):
        if symbol_name is None and addr is None:
            raise ProbeError("a probe needs symbol_name or addr")
        self.symbol_name = symbol_name
        self.offset = offset
        self.addr = addr
        self.pre_handler = pre_handler
        self.post_handler = post_handler
        self.fault_handler = fault_handler
        self.break_handler = break_handler
        self.name = name
        self.nmissed = 0
        self.hits = 0
        self.faults = 0  # handler errors and faults charged to this probe
        #: Executions of the probed instruction on other CPUs while an in-place step had the
        #: original byte back (`set kprobe-step in-place`): calls the probe never saw.
        self.missed_in_place = 0
        self.disabled = False
        self.internal = False  # the engine's own (the trampoline probe): not listed, not user-removable
        self.number: int | None = None  # the shell's probe number
        # Set by arch_prepare_kprobe:
        self.opcode: int | None = None
        self.ainsn: DecodedInsn | None = None
        self.slot: int | None = None
        self.boosted = False
        self.optimize_refusal: str | None = None  # why the optimizer left it an int3 probe
        self.engine: "KprobeEngine | None" = None

    def __repr__(self) -> str:
        where = self.symbol_name + (f"+0x{self.offset:x}" if self.offset else "") if self.symbol_name else ""
        return f"<{type(self).__name__} {where or hex(self.addr or 0)}>"

    @property
    def registered(self) -> bool:
        return self.engine is not None

    @property
    def mode(self) -> str:
        """How hits get past the instruction: decided by the table entry (an aggregate
        manager decides for all the probes sharing its address)."""
        entry = self.engine.get_kprobe(self.addr) if self.engine is not None else None
        if entry is not None and self.addr in self.engine.optimizer.active:
            return "optimized"
        return "boost" if (entry or self).boosted else "single-step"

    @property
    def owner(self) -> "Kprobe":
        """The user-facing probe a kprobe belongs to (a jprobe's or kretprobe's kp: itself)."""
        return getattr(self, "_owner", self)


class AggrKprobe(Kprobe):
    """The manager that stands in the table when several probes share an address."""

    kind = "aggr"

    def __init__(self, first: Kprobe):
        super().__init__(addr=first.addr)
        self.children: list[Kprobe] = [first]
        self.curr: Kprobe | None = None
        self.pre_handler = self._aggr_pre_handler
        self.post_handler = self._aggr_post_handler
        self.fault_handler = self._aggr_fault_handler
        self.break_handler = self._aggr_break_handler
        self.opcode, self.ainsn, self.slot = first.opcode, first.ainsn, first.slot

    def add(self, p: Kprobe) -> None:
        """add_new_kprobe: a jprobe (break_handler) goes last, kprobes go first (newest first)."""
        if p.break_handler or p.kind == "j":
            if any(c.break_handler or c.kind == "j" for c in self.children):
                raise ProbeError(f"0x{p.addr:x} already has a jprobe: at most one jprobe per address")
            self.children.append(p)
        else:
            self.children.insert(0, p)

    def active_children(self) -> list[Kprobe]:
        return [c for c in self.children if not c.disabled]

    def _aggr_pre_handler(self, p, regs) -> int:
        for child in self.active_children():
            # [tests fix] A child without a pre_handler is hit too (as a lone probe
            # without one is); it was skipped before its hit was counted.
            child.hits += 1
            if child.pre_handler is None:
                continue
            self.curr = child
            self.engine.say(lambda: f"aggregate: pre_handler of probe {child.owner.number or child.owner!r} "
                            f"({type(child.owner).__name__.lower()})")
            if self.engine._call(child, "pre_handler", child.pre_handler, child, regs):
                return 1
        return 0

    def _aggr_post_handler(self, p, regs, flags) -> None:
        for child in self.active_children():
            if child.post_handler is not None:
                self.curr = child
                self.engine.say(lambda: f"aggregate: post_handler of probe {child.owner.number or child.owner!r}")
                self.engine._call(child, "post_handler", child.post_handler, child, regs, flags)

    def _aggr_fault_handler(self, p, regs, trapnr) -> int:
        cur = self.curr
        if cur is not None and cur.fault_handler is not None:
            return self.engine._call(cur, "fault_handler", cur.fault_handler, cur, regs, trapnr)
        return 0

    def _aggr_break_handler(self, p, regs) -> int:
        cur = self.curr
        if cur is not None and cur.break_handler is not None:
            return self.engine._call(cur, "break_handler", cur.break_handler, cur, regs)
        return 0


@dataclass
class HandlerError:
    """A handler raised: reported with its file and line, charged to the probe."""

    probe: Kprobe
    handler: str
    exception: BaseException
    where: str  # "file:line" of the innermost frame in the handler's code

    def __str__(self) -> str:
        return f"{self.handler} of {self.probe.owner!r} {describe_handler_exception(self.exception)} ({self.where})"


def describe_handler_exception(exc: BaseException) -> str:
    """"raised ValueError: ...", or what the guard did to a handler that would not return."""
    if isinstance(exc, HandlerTimeout):
        return "ran past the handler-timeout and was stopped (HandlerTimeout)"
    if isinstance(exc, (HandlerInterrupted, KeyboardInterrupt)):
        return "was interrupted by Ctrl-C"
    return f"raised {type(exc).__name__}: {exc}"


#: Functions still running when the 2005 kernel calls kprobe_flush_task, so their return
#: probes lose their instance (see kretprobes.py): the exec chain down to flush_thread, and
#: exit_thread on the exit path (do_exit never returns, so it is safe).
EXEC_PATH_PATTERNS = ("sys_execve", "do_execve", "search_binary_handler", "load_*_binary", "flush_old_exec",
                      "flush_thread")
EXIT_PATH_PATTERNS = ("exit_thread", "kprobe_flush_task")


class KprobeEngine:
    """All probes of one machine: the table, the trap paths, the per-CPU state."""

    # The per-CPU state of the probe being handled lives in this CPU's kprobe_ctlblk (see
    # percpu.py); these read and write the block of the CPU that trapped.
    current_kprobe = per_cpu("current_kprobe")
    kprobe_status = per_cpu("kprobe_status")
    kprobe_saved_rflags = per_cpu("kprobe_saved_rflags")
    kprobe_old_rflags = per_cpu("kprobe_old_rflags")
    _prev = per_cpu("prev_kprobe")
    _rep_count_before = per_cpu("rep_count_before")

    @property
    def kcb(self) -> KprobeCtlblk:
        """get_kprobe_ctlblk(): the control block of the CPU that is running."""
        return self.ctlblks[self.machine.cpu.index]

    def __init__(self, machine: Machine):
        self.machine = machine
        self.ctlblks = [KprobeCtlblk() for _ in range(machine.ncpus)]
        self.step_mode = "out-of-line"  # see STEP_MODES
        #: addr -> the code hook counting other CPUs' runs through an open in-place window.
        self._in_place_windows: dict[int, int] = {}
        #: Times a CPU hit an int3 while another CPU held the 2005 kprobe_lock and spun.
        self.lock_spins = 0
        self.kprobe_table: list[list[Kprobe]] = [[] for _ in range(KPROBE_TABLE_SIZE)]
        self.slots = InsnSlots(machine)
        self.regs = PtRegs(machine)
        self.mode = "auto"  # "auto" (boost when safe), "single-step", "boost"
        #: What to do when a handler raises: "continue", "disable" the probe, or "stop" the guest.
        self.handler_error_policy = "continue"
        #: Ends handlers that run too long (`handler-timeout`) or when Ctrl-C asks (guard.py).
        self.guard = HandlerGuard()
        # Handlers run on the thread that runs the guest (the prompt's, or a background
        # run's worker): the guard learns it once per run, not on every call.
        machine.before_run.append(self.guard.watch_this_thread)
        self.listeners: list[Callable[[object], None]] = []
        self.narrator: Callable[[str], None] | None = None
        self._boundaries: dict[int, list[int]] = {}
        syms = machine.image.symbols
        self._jprobe_return = syms.get("jprobe_return")
        end = syms.get("jprobe_return_end")
        self._jprobe_return_end = end.address if end else None
        machine.trap_handlers[3] = self.kprobe_handler
        machine.trap_handlers[1] = self.post_kprobe_handler
        machine.fault_notifier = self.kprobe_fault_handler
        # The jump optimizer (optprobes, kprobes/optimize.py).
        from .optimize import KprobeOptimizer

        self.optimizer = KprobeOptimizer(self)
        # Return probes need their trampoline probe from the start, as the kernel's arch_init.
        from .kretprobes import KretprobeManager

        self.kretprobes = KretprobeManager(self)
        from .jprobes import JprobeManager

        self.jprobes = JprobeManager(self)

    # ------------------------------------------------------------------ reporting
    def _emit(self, event) -> None:
        for listener in self.listeners:
            listener(event)

    def say(self, text) -> None:
        """Narration for `explain on`. Callers pass a lambda, so the words are only put
        together when somebody listens: a probe hit must not pay for formatting."""
        if self.narrator is not None:
            words = text() if callable(text) else text
            if words:  # a narration may decide there is nothing worth saying
                self.narrator(words)

    @guarded_caller
    def _call(self, p: Kprobe, which: str, fn: Callable, *args):
        """Run a user handler; an exception is reported and charged to the probe, never fatal.

        The guard ends a handler that runs past handler-timeout or when Ctrl-C comes
        (HandlerTimeout / HandlerInterrupted are raised inside it).  A handler's
        Whatever a handler raises is its failure, a BaseException too (KeyboardInterrupt,
        SystemExit, a class of its own): the probe path completes, as the kernel's would,
        and a Ctrl-C is honoured after it (_handler_failed asks the guest to stop)."""
        # HandlerGuard.enter() and leave(), inlined (same updates, same order): two method
        # calls per handler call were a measurable part of a probe hit.  guard.py says why
        # these plain updates are enough (the GIL; the watchdog only reads them).
        guard = self.guard
        depth = guard.depth
        guard.calls += 1
        guard.depth = depth + 1
        try:
            try:
                result = fn(*args)
            finally:
                guard.depth = depth
                if guard.fired is not None:
                    guard.settle()  # withdraw an exception that came too late (leave())
        except BaseException as exc:  # noqa: BLE001 - the handler's, never the engine's
            guard.leave(depth)  # in case the guard's exception landed inside leave() itself
            self._handler_failed(p, which, exc)
            # An internal probe (the trampoline's) has no slot to step: it is done.
            return 1 if p.internal else 0
        return result

    def _handler_failed(self, p: Kprobe, which: str, exc: BaseException) -> None:
        owner = p.owner
        owner.faults += 1
        tb = traceback.extract_tb(exc.__traceback__)
        here = __file__.rsplit("/", 2)[0]
        frames = [f for f in tb if not f.filename.startswith(here)] or list(tb)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        self._emit(HandlerError(owner, which, exc, where))
        if owner.internal:
            # [robustness fix] The engine's own handler failed: this is a bug of the tool, and
            # stepping on would crash it (the trampoline probe has no slot).  Stop, inspectable.
            name = owner.name or repr(owner)
            self.machine.stop_guest(self.machine._event(
                StopReason.BUG, f"internal error in the engine's {name} ({which}): "
                f"{type(exc).__name__}: {exc}"))
            return
        if isinstance(exc, (HandlerInterrupted, KeyboardInterrupt)):
            self.machine.request_stop()  # Ctrl-C: the guest stops too, whatever the policy
            return
        if self.handler_error_policy == "disable" and not owner.internal:
            # [robustness fix] a jprobe's or kretprobe's `disabled` is its kprobe's (read-only
            # on the owner): disabling the owner itself raised AttributeError in the engine.
            self.disable(getattr(owner, "kp", owner))
        elif self.handler_error_policy == "stop":
            self.machine.stop_guest(
                self.machine._event(StopReason.HANDLER, f"{which} of {owner!r} {describe_handler_exception(exc)}")
            )

    # ------------------------------------------------------------------ the table
    def get_kprobe(self, addr: int) -> Kprobe | None:
        for p in self.kprobe_table[hash_ptr(addr)]:
            if p.addr == addr:
                return p
        return None

    def all_probes(self) -> list[Kprobe]:
        """Every user probe (children of aggregates, not the managers), in registration order."""
        out = []
        for bucket in self.kprobe_table:
            for p in bucket:
                out.extend(p.children if isinstance(p, AggrKprobe) else [p])
        return sorted((p for p in out if not p.internal), key=lambda p: getattr(p, "_seq", 0))

    def kprobe_running(self) -> bool:
        return self.current_kprobe is not None

    # ------------------------------------------------------------------ where probes may go
    def resolve(self, p: Kprobe) -> int:
        """The address a probe asks for: symbol + offset, or addr."""
        syms = self.machine.image.symbols
        if p.symbol_name is not None:
            if p.symbol_name not in syms:
                raise ProbeError(syms.unknown_message(p.symbol_name))
            return syms[p.symbol_name].address + p.offset
        return p.addr + p.offset if p.offset and p.addr is not None else p.addr

    def instruction_boundaries(self, func_addr: int) -> list[int]:
        """Start addresses of the instructions of the function at func_addr (decoded once)."""
        if func_addr not in self._boundaries:
            image = self.machine.image
            hit = image.symbols.containing(func_addr)
            sym = hit[0]
            code = image.symbol_bytes(sym)
            from .x86 import _cs

            out, end = [], sym.address
            for insn in _cs.disasm(code, sym.address):
                out.append(insn.address)
                end = insn.address + insn.size
            if end < sym.end:  # undecodable tail: stop listing there
                pass
            self._boundaries[func_addr] = out
        return self._boundaries[func_addr]

    def check_probe_address(self, addr: int) -> DecodedInsn:
        """Refuse what cannot be probed (the kernel returns -EINVAL); else decode the insn."""
        image = self.machine.image
        syms = image.symbols
        where = syms.format(addr)
        if RESERVED_BASE <= addr < RESERVED_END:
            what = "instruction slot page" if self.slots.contains(addr) else "reserved pages"
            raise ProbeError(f"0x{addr:x} is in the engine's own {what}: it cannot be probed")
        if not image.is_text(addr):
            shown = f"0x{addr:x}" + (f" ({where})" if where != f"0x{addr:x}" else "")
            raise ProbeError(f"{shown} is outside the image's text: only code can be probed")
        tramp = self.kretprobes.trampoline
        if tramp is not None and addr == tramp:
            raise ProbeError("kretprobe_trampoline cannot be probed: the engine's own probe owns it")
        jr = self._jprobe_return
        if jr is not None and jr.address <= addr < max(jr.end, (self._jprobe_return_end or 0) + 1):
            raise ProbeError("jprobe_return cannot be probed: its int3 is how a jprobe handler returns")
        hit = syms.containing(addr)
        if hit is None or not hit[0].size or not hit[0].contains(addr):
            raise ProbeError(f"0x{addr:x} is not inside any function of the image")
        sym, off = hit
        bounds = self.instruction_boundaries(sym.address)
        if addr not in bounds:
            import bisect

            i = bisect.bisect_left(bounds, addr)
            before = bounds[i - 1] if i > 0 else None
            after = bounds[i] if i < len(bounds) else None
            near = ", ".join(f"{sym.name}+0x{b - sym.address:x}" for b in (before, after) if b is not None)
            raise ProbeError(
                f"{sym.name}+0x{off:x} is not an instruction boundary (nearest: {near})"
            )
        original = image.symbol_bytes(sym)[off : off + 15]
        insn = decode_at(original, addr)
        if insn is None:
            raise ProbeError(f"cannot decode the instruction at {where}")
        if insn.opcode == 0xF4:
            raise ProbeError(f"{where} is hlt: the machine stops on hlt, so it cannot be stepped out of line")
        if insn.opcode == BREAKPOINT_INSTRUCTION:
            raise ProbeError(f"{where} is already an int3")
        return insn

    # ------------------------------------------------------------------ register/unregister
    def _refuse_from_handler(self, what: str) -> None:
        """[robustness fix] register/unregister from inside a handler: the kernel's may sleep
        and must not be called there; here, a probe unregistering itself mid-hit lost its
        slot under the step and crashed the engine (TypeError)."""
        if self.guard.running:
            raise ProbeError(f"{what} cannot be called from a probe handler; disable the probe instead")

    def register_kprobe(self, p: Kprobe) -> Kprobe:
        self._refuse_from_handler("register_kprobe")
        if p.registered:
            raise ProbeError(f"{p!r} is already registered")
        addr = self.resolve(p)
        insn = self.check_probe_address(addr)
        p.addr = addr
        p.engine = self
        self._seq = getattr(self, "_seq", 0) + 1
        p._seq = self._seq
        old = self.get_kprobe(addr)
        if old is not None:
            try:
                self._register_aggr(old, p)
            except ProbeError:
                p.engine = None
                raise
            return p
        try:
            self.arch_prepare_kprobe(p, insn)
        except ProbeError:
            p.engine = None
            raise
        # A jump planted just before addr may cover it: back to an int3 probe first.
        self.optimizer.unoptimize_covering(addr)
        self.kprobe_table[hash_ptr(addr)].append(p)
        if not p.disabled:
            self.arm_kprobe(p)
        self.optimizer.refresh(p)
        return p

    def _register_aggr(self, old: Kprobe, p: Kprobe) -> None:
        """register_aggr_kprobe: a second probe on an address turns the entry into a manager."""
        if isinstance(old, AggrKprobe):
            old.add(p)
            agg = old
        else:
            agg = AggrKprobe(old)
            agg.engine = self
            agg.boosted = False
            agg.add(p)
            bucket = self.kprobe_table[hash_ptr(old.addr)]
            bucket[bucket.index(old)] = agg
        p.opcode, p.ainsn, p.slot = agg.opcode, agg.ainsn, agg.slot
        self._refresh_arming(agg)
        self.say(lambda: f"second probe at {self.machine.image.symbols.format(agg.addr)}: an aggregate kprobe now stands in "
                 f"kprobe_table[{hash_ptr(agg.addr)}] and calls its {len(agg.children)} probes in turn; they share the first "
                 f"probe's slot 0x{agg.slot:x} ({'boosted' if agg.boosted else 'single-stepped'}: "
                 "boosted only when no child needs the debug trap)")

    def unregister_kprobe(self, p: Kprobe) -> None:
        self._refuse_from_handler("unregister_kprobe")
        if p.engine is not self:
            raise ProbeError(f"{p!r} is not registered")
        entry = self.get_kprobe(p.addr)
        if isinstance(entry, AggrKprobe):
            entry.children.remove(p)
            if entry.children:
                self._refresh_arming(entry)
            else:
                self._remove_entry(entry)
        elif entry is p:
            self._remove_entry(p)
        if self.current_kprobe is p:
            self.current_kprobe = None
        p.engine = None

    def _remove_entry(self, entry: Kprobe) -> None:
        window = self._in_place_windows.pop(entry.addr, None)
        if window is not None:
            self.machine.remove_hook(window)
        op = self.optimizer.active.get(entry.addr)
        if op is not None:
            self.optimizer.arch_unoptimize_kprobe(op, armed=False)
        if self.machine.read(entry.addr, 1)[0] == BREAKPOINT_INSTRUCTION:
            self.disarm_kprobe(entry)
        self.kprobe_table[hash_ptr(entry.addr)].remove(entry)
        self.optimizer.reconsider_near(entry.addr)
        if entry.slot is not None:
            self._leave_slot(entry)
            self.slots.free(entry.slot)
            entry.slot = None

    def _leave_slot(self, entry: Kprobe) -> None:
        """[tests fix] The guest was stopped between the int3 and the out-of-line copy (a
        handler asked to stop, or a breakpoint): its rip is in the slot about to be freed
        (and filled with int3s), and the next run faulted there.  Send it back to the
        probed address, where the original instruction now stands, flags as before the
        step."""
        machine = self.machine
        rip = machine.rip
        if self.slots.slot_of(rip) != entry.slot:
            return
        if rip == entry.slot:
            # The copy has not run: the original will, and be counted; its int3 was.
            machine.set_reg("rip", entry.addr)
            machine.adjust_clock(-1)
        else:
            machine.set_reg("rip", entry.addr + entry.ainsn.length)  # at the jmp back
        if self.current_kprobe is entry and self.kprobe_status in (KprobeStatus.HIT_SS, KprobeStatus.REENTER):
            machine.set_reg("eflags", (machine.eflags & ~EFLAGS_TF) | self.kprobe_saved_rflags)
            self.current_kprobe = None
            self.kprobe_status = None

    def disable(self, p: Kprobe) -> None:
        """Disarm without losing the probe or its counters."""
        p.disabled = True
        entry = self.get_kprobe(p.addr)
        if entry is not None:
            self._refresh_arming(entry)

    def enable(self, p: Kprobe) -> None:
        p.disabled = False
        entry = self.get_kprobe(p.addr)
        if entry is not None:
            self._refresh_arming(entry)

    def _refresh_arming(self, entry: Kprobe) -> None:
        """Armed exactly when some probe at the address is enabled."""
        live = entry.active_children() if isinstance(entry, AggrKprobe) else ([] if entry.disabled else [entry])
        op = self.optimizer.active.get(entry.addr)
        if op is not None and not live:
            self.optimizer.arch_unoptimize_kprobe(op, armed=False)  # disarmed below if needed
        armed = op is not None and live or self.machine.read(entry.addr, 1)[0] == BREAKPOINT_INSTRUCTION
        if live and not armed:
            self.arm_kprobe(entry)
        elif not live and armed:
            self.disarm_kprobe(entry)
        if isinstance(entry, AggrKprobe):
            entry.boosted = self._want_boost(entry)
        self.optimizer.refresh(entry)

    # ------------------------------------------------------------------ arch: prepare, arm
    def _want_boost(self, p: Kprobe) -> bool:
        if self.mode == "single-step" or p.ainsn is None or not p.ainsn.boostable():
            return False
        # A post_handler needs the debug trap after the step; a break_handler (jprobe) needs
        # the stepped path after longjmp.
        # [tests fix] A fault_handler needs the probe to be running while the copy executes
        # (kprobe_fault_handler only sees faults of a running probe): a boosted copy that
        # faulted never reached the fault_handler.
        if isinstance(p, AggrKprobe):
            return not any(c.post_handler or c.break_handler or c.fault_handler for c in p.children)
        return p.post_handler is None and p.break_handler is None and p.fault_handler is None

    def arch_prepare_kprobe(self, p: Kprobe, insn: DecodedInsn) -> None:
        slot = self.slots.get(p)
        try:
            copy = copy_for_slot(insn, slot)
        except ProbeError:
            self.slots.free(slot)
            raise
        p.ainsn, p.opcode, p.slot = insn, insn.raw[0], slot
        p.boosted = self._want_boost(p)
        # The jmp back is there for boosted runs; a single-step never reaches it (the debug
        # trap comes first), so one slot layout serves both modes.
        self.machine.write(slot, copy + jmp_rel32(slot + len(copy), p.addr + insn.length))
        self.say(lambda: f"arch_prepare_kprobe: copied '{insn.text}' ({insn.raw.hex(' ')}) from "
                 f"{self.machine.image.symbols.format(p.addr)} into insn slot {(slot - self.slots.base) // self.slots.size} "
                 f"at 0x{slot:x}, followed by jmp 0x{p.addr + insn.length:x} (the way back when boosted)")
        if insn.rip_disp_offset is not None:
            # new_disp = (addr + old_disp) - slot: both displacements count from the end of the instruction.
            self.say(lambda off=insn.rip_disp_offset,
                     old=int.from_bytes(insn.raw[insn.rip_disp_offset:insn.rip_disp_offset + 4], "little", signed=True),
                     new=int.from_bytes(copy[insn.rip_disp_offset:insn.rip_disp_offset + 4], "little", signed=True): (
                f"RIP-relative operand: displacement 0x{old & 0xffffffff:08x} ({old:+#x}) at byte {off} reaches "
                f"0x{p.addr + insn.length + old:x} from 0x{p.addr + insn.length:x}; in the slot it becomes "
                f"0x{new & 0xffffffff:08x} ({new:+#x}), which reaches the same address from 0x{slot + insn.length:x}"))

    def set_mode(self, mode: str) -> None:
        if mode not in ("auto", *MODES):
            raise ProbeError(f"unknown kprobe mode '{mode}' (auto, single-step, boost, optimize)")
        self.mode = mode
        for bucket in self.kprobe_table:
            for p in list(bucket):
                p.boosted = self._want_boost(p)
                self.optimizer.refresh(p)

    def arm_kprobe(self, p: Kprobe) -> None:
        self.machine.write(p.addr, bytes([BREAKPOINT_INSTRUCTION]))
        self.say(lambda: f"armed: int3 (cc) planted at {self.machine.image.symbols.format(p.addr)} (0x{p.addr:x}) "
                 f"over the original byte {p.opcode:02x}")

    def disarm_kprobe(self, p: Kprobe) -> None:
        self.machine.write(p.addr, bytes([p.opcode]))
        self.say(lambda: f"disarmed: original byte {p.opcode:02x} written back over the int3 at "
                 f"{self.machine.image.symbols.format(p.addr)} (0x{p.addr:x})")

    def planted(self) -> dict[int, int]:
        """Address -> original first byte, for every armed int3 (for `x` and `disas`);
        optimized probes' jumps are in optimizer.replaced_bytes()."""
        out = {}
        for bucket in self.kprobe_table:
            for p in bucket:
                if p.opcode is not None and self.machine.read(p.addr, 1)[0] == BREAKPOINT_INSTRUCTION:
                    out[p.addr] = p.opcode
        return out

    def original_bytes(self, addr: int, size: int) -> bytes:
        """Memory as the guest would see it with no probe planted."""
        data = bytearray(self.machine.read(addr, size))
        for a, byte in self.planted().items():
            if addr <= a < addr + size:
                data[a - addr] = byte
        for a, orig in self.optimizer.replaced_bytes().items():
            for i, byte in enumerate(orig):
                if addr <= a + i < addr + size:
                    data[a + i - addr] = byte
        return bytes(data)

    # ------------------------------------------------------------------ trap paths
    def kprobe_handler(self, machine: Machine) -> bool:
        """The int3 trap (do_int3 -> kprobe_exceptions_notify -> kprobe_handler)."""
        regs = self.regs
        addr = machine.rip - 1
        kcb = self.kcb  # this CPU's kprobe_ctlblk, looked up once per trap (a hot path)
        if machine.ncpus > 1 and kcb.current_kprobe is None and self._kprobe_lock_held_elsewhere():
            return self._spin_on_kprobe_lock(machine, addr)
        if kcb.spinning:
            kcb.spinning = False  # the lock was free this time: this CPU takes it
        p = self.get_kprobe(addr)
        if kcb.current_kprobe is not None:
            if p is not None:
                if self.kprobe_status is KprobeStatus.HIT_SS:
                    # An int3 inside the step itself: not ours to handle.
                    return False
                # A probe hit while another probe's handler runs: step it, call nothing.
                self._save_previous_kprobe()
                self.current_kprobe = p
                self._inc_nmissed(p)
                self.say(lambda: f"int3 at {machine.image.symbols.format(addr)} while probe "
                         f"{self._prev[0].owner.number or self._prev[0].owner!r} is running (a handler is active): "
                         f"no handlers run, nmissed of probe {p.owner.number or p.owner!r} is now {p.owner.nmissed}; "
                         "the instruction is just stepped (KPROBE_REENTER)")
                self._prepare_singlestep(p, machine)
                self.kprobe_status = KprobeStatus.REENTER
                return True
            cur = self.current_kprobe
            if cur.break_handler is not None and cur.break_handler(cur, regs):
                self._ss_probe(cur, machine)
                return True
            return False
        if p is None:
            if machine.read(addr, 1)[0] != BREAKPOINT_INSTRUCTION:
                # The probe went away between the trap and now (unregister race): resume at addr.
                machine.set_reg("rip", addr)
                return True
            return False  # not ours: an int3 of the guest's own
        kcb.current_kprobe = p
        kcb.kprobe_status = KprobeStatus.HIT_ACTIVE
        self.say(lambda: (
            f"int3 trap, rip 0x{addr + 1:x}: the breakpoint at 0x{addr:x} is kretprobe_trampoline; the engine's "
            f"probe there runs trampoline_probe_handler" if p.internal else
            f"int3 trap, rip 0x{addr + 1:x}: probe at {machine.image.symbols.format(addr)} (0x{addr:x}) found in "
            f"kprobe_table[{hash_ptr(addr)}]: " + (
                f"an aggregate of {len(p.active_children())} probes" if isinstance(p, AggrKprobe) else
                f"{type(p.owner).__name__.lower()} {p.owner.number or p.owner!r}")
            + ("; running its pre_handler (KPROBE_HIT_ACTIVE)" if p.pre_handler is not None else "; no pre_handler")))
        if p.pre_handler is not None:
            if not isinstance(p, AggrKprobe):
                p.hits += 1
                handled = self._call(p, "pre_handler", p.pre_handler, p, regs)
            else:
                handled = p.pre_handler(p, regs)
            if handled:
                self.say(lambda: "" if p.internal else (  # the trampoline already said where it returns
                    f"pre_handler returned 1: it changed the flow, rip is now "
                    f"{machine.image.symbols.format(machine.rip)} (0x{machine.rip:x}); no single-step"))
                # The handler moved execution (jprobe, trampoline): no single-step.
                # [tests fix] Only a jprobe (break_handler) stays the running probe until its
                # jprobe_return int3; any other handler that took over is done, so the probe
                # stops running (later kernels' reset_current_kprobe).  Before, it stayed
                # current forever and every later hit of any probe counted as nmissed.
                taker = p.curr if isinstance(p, AggrKprobe) else p
                if taker is None or taker.break_handler is None:
                    kcb.current_kprobe = None
                    kcb.kprobe_status = None
                return True
        elif not isinstance(p, AggrKprobe):
            p.hits += 1
        self._ss_probe(p, machine)
        return True

    def _ss_probe(self, p: Kprobe, machine: Machine) -> None:
        if self.optimizer.active and self.optimizer.resume_in_detour(p):
            return  # after a jprobe's longjmp: the copies run in the detour buffer
        if self.step_mode == "in-place":
            self._prepare_singlestep_in_place(p, machine)
            self.kprobe_status = KprobeStatus.HIT_SS
            return
        if p.boosted:
            # Boost: run the copy and the jmp back, no debug trap.
            machine.set_reg("rip", p.slot)
            kcb = self.kcb
            kcb.current_kprobe = None
            kcb.kprobe_status = None
            self.say(lambda: f"boosted: rip = slot 0x{p.slot:x}; the copy '{p.ainsn.text}' runs, then the "
                     f"jmp at 0x{p.slot + p.ainsn.length:x} goes straight back to "
                     f"{machine.image.symbols.format(p.addr + p.ainsn.length)} (0x{p.addr + p.ainsn.length:x}): "
                     f"no debug trap, no post_handler")
            return
        self._prepare_singlestep(p, machine)
        self.kprobe_status = KprobeStatus.HIT_SS

    def _prepare_singlestep(self, p: Kprobe, machine: Machine) -> None:
        self.kcb.ss_in_place = False
        eflags = machine.eflags
        self.kprobe_saved_rflags = self.kprobe_old_rflags = eflags & (EFLAGS_TF | EFLAGS_IF)
        if p.ainsn.is_if_modifier():
            self.kprobe_saved_rflags &= ~EFLAGS_IF
        machine.set_reg("eflags", (eflags | EFLAGS_TF) & ~EFLAGS_IF)
        machine.set_reg("rip", p.slot)
        self._rep_count_before = machine.reg("rcx") if p.ainsn.is_rep_string() else None
        self.say(lambda: f"single-step out of line: rip 0x{p.addr + 1:x} -> slot 0x{p.slot:x} holding "
                 f"'{p.ainsn.text}'; eflags 0x{eflags:x} -> 0x{machine.eflags:x} (TF set, IF cleared) (KPROBE_HIT_SS)")

    def post_kprobe_handler(self, machine: Machine) -> bool:
        """The debug trap after the step: post_handler, resume_execution, flags back."""
        cur = self.current_kprobe
        if cur is None or self.kprobe_status not in (KprobeStatus.HIT_SS, KprobeStatus.REENTER):
            return False
        regs = self.regs
        self.say(lambda: f"debug trap: the copy ran (one instruction), rip 0x{machine.rip:x}, rsp 0x{machine.reg('rsp'):x}")
        if self.kprobe_status is not KprobeStatus.REENTER and cur.post_handler is not None:
            self.say(lambda: "running the post_handler (KPROBE_HIT_SSDONE) before resume_execution's fix-up")
            self.kprobe_status = KprobeStatus.HIT_SSDONE
            if isinstance(cur, AggrKprobe):
                cur.post_handler(cur, regs, 0)
            else:
                self._call(cur, "post_handler", cur.post_handler, cur, regs, 0)
        self.resume_execution(cur, machine)
        self._rep_string_exit_pass(cur, machine)
        machine.set_reg("eflags", (machine.eflags & ~EFLAGS_TF) | self.kprobe_saved_rflags)
        if self.kcb.ss_in_place:
            self._close_in_place_window(cur)
        if self.kprobe_status is KprobeStatus.REENTER:
            self._restore_previous_kprobe()
        else:
            self.current_kprobe = None
            self.kprobe_status = None
            self._hand_over_kprobe_lock(machine)
        return True

    def resume_execution(self, p: Kprobe, machine: Machine) -> None:
        """Fix rip and the stack after the copy ran in the slot (the table in the docs)."""
        insn = p.ainsn
        # Stepped in place, the "copy" is the original: every fix-up below is then the
        # identity, except pushf's (TF must not stay in the pushed flags).
        copy_rip, orig_rip = (p.addr if self.kcb.ss_in_place else p.slot), p.addr
        rsp = machine.reg("rsp")
        kind = insn.fixup_kind()
        fix_rip = True
        if kind == "pushf":
            tos = machine.read_u64(rsp)
            machine.write_u64(rsp, (tos & ~(EFLAGS_TF | EFLAGS_IF)) | self.kprobe_old_rflags)
            self.say(lambda: f"pushf pushed the stepping flags: the word at 0x{rsp:x} goes from 0x{tos:x} to "
                     f"0x{machine.read_u64(rsp):x} (TF/IF as before the trap)")
        elif kind in ("ret/iret: rip absolute", "indirect jmp: rip absolute", "far jmp: rip absolute"):
            fix_rip = False
        elif kind == "call rel32":
            tos = machine.read_u64(rsp)
            machine.write_u64(rsp, orig_rip + (tos - copy_rip))
            self.say(lambda: f"the call pushed a return address inside the slot: stack slot 0x{rsp:x} goes from "
                     f"0x{tos:x} to 0x{orig_rip + (tos - copy_rip):x} "
                     f"({machine.image.symbols.format(orig_rip + (tos - copy_rip))})")
        elif kind == "indirect call":
            tos = machine.read_u64(rsp)
            machine.write_u64(rsp, orig_rip + (tos - copy_rip))
            self.say(lambda: f"the indirect call pushed a return address inside the slot: stack slot 0x{rsp:x} goes "
                     f"from 0x{tos:x} to 0x{orig_rip + (tos - copy_rip):x} "
                     f"({machine.image.symbols.format(orig_rip + (tos - copy_rip))})")
            fix_rip = False
        if fix_rip:
            machine.set_reg("rip", orig_rip + (machine.rip - copy_rip))
        self.say(lambda: (
            f"resume_execution, fix-up '{kind}': rip 0x{copy_rip + machine.rip - orig_rip:x} (relative to the slot) -> "
            f"0x{machine.rip:x} ({machine.image.symbols.format(machine.rip)}) = 0x{orig_rip:x} + "
            f"(0x{copy_rip + machine.rip - orig_rip:x} - slot 0x{copy_rip:x})" if fix_rip else
            f"resume_execution, fix-up '{kind}': rip 0x{machine.rip:x} ({machine.image.symbols.format(machine.rip)}) "
            "is already absolute: left alone"))

    def _rep_string_exit_pass(self, p: Kprobe, machine: Machine) -> None:
        """[tests fix] Keep the clock exact across a stepped rep string instruction.

        Unstepped, the CPU's instruction counter sees each iteration as one instruction
        plus one more pass that finds the count exhausted and leaves; stepped (TF set),
        each iteration is one hit of the int3 and the last iteration leaves at once.  So
        when a step ends the instruction by exhausting rcx, send the guest back to the
        probed address for that last pass (rcx is 0: it only moves rip on).  The pass
        hits the probe like any other; without it every timer tick after it landed one
        instruction early.
        """
        before = getattr(self, "_rep_count_before", None)
        self._rep_count_before = None
        if before is None or before == 0 or machine.rip == p.addr:
            return  # no iteration ran, or the instruction is not finished yet
        insn = p.ainsn
        if machine.reg("rcx") != 0:
            return  # repe/repne ended on ZF, not on the count
        if insn.opcode in (0xA6, 0xA7, 0xAE, 0xAF):
            zf = bool(machine.eflags & 0x40)
            repe = any(b == 0xF3 for b in insn.raw[: insn.opcode_index])
            if zf != repe:
                return  # the ZF condition ended it (it is tested before the count)
        machine.set_reg("rip", p.addr)

    def kprobe_fault_handler(self, machine: Machine, trapnr: int) -> bool:
        """A fault while a probe is active: its fault_handler first, else undo the step."""
        cur = self.current_kprobe
        if cur is None:
            # [tests fix] A boosted copy faulted (no probe is running then): make the fault
            # appear where the guest put the instruction, not in the slot, as for a step.
            slot = self.slots.slot_of(machine.rip)
            owner = self.slots.owner.get(slot) if slot is not None else None
            if owner is not None and machine.rip == slot and getattr(owner, "boosted", False):
                machine.set_reg("rip", owner.addr)
            elif self.optimizer.in_detour(machine.rip):
                machine.set_reg("rip", machine.guest_address(machine.rip))
            return False
        if cur.fault_handler is not None:
            if isinstance(cur, AggrKprobe):
                handled = cur.fault_handler(cur, self.regs, trapnr)
            else:
                handled = self._call(cur, "fault_handler", cur.fault_handler, cur, self.regs, trapnr)
            if handled:
                return True
        if self.kprobe_status is KprobeStatus.HIT_SS and self.kcb.ss_in_place:
            # The in-place step faulted: the int3 goes back, the fault is the guest's.
            machine.set_reg("eflags", (machine.eflags & ~EFLAGS_TF) | self.kprobe_saved_rflags)
            self._close_in_place_window(cur)
            self.current_kprobe = None
            self.kprobe_status = None
            return False
        if self.kprobe_status is KprobeStatus.HIT_SS and self.slots.slot_of(machine.rip) == cur.slot:
            # Make the fault appear where the guest put the instruction, not in the slot.
            machine.set_reg("rip", cur.addr)
            machine.set_reg("eflags", (machine.eflags & ~EFLAGS_TF) | self.kprobe_saved_rflags)
            self.current_kprobe = None
            self.kprobe_status = None
        return False

    def _inc_nmissed(self, p: Kprobe) -> None:
        for child in p.children if isinstance(p, AggrKprobe) else [p]:
            child.owner.nmissed += 1

    def _save_previous_kprobe(self) -> None:
        kcb = self.kcb
        self._prev = (self.current_kprobe, self.kprobe_status, self.kprobe_saved_rflags, self.kprobe_old_rflags,
                      kcb.ss_in_place)

    def _restore_previous_kprobe(self) -> None:
        (self.current_kprobe, self.kprobe_status, self.kprobe_saved_rflags, self.kprobe_old_rflags,
         self.kcb.ss_in_place) = self._prev
        self._prev = None

    # ------------------------------------------------------------------ SMP: the lock, in-place steps
    def _kprobe_lock_held_elsewhere(self) -> bool:
        """Does another CPU hold the 2005 kprobe_lock (is it between an int3 and the end of
        its step, or inside a jprobe handler)?"""
        me = self.machine.cpu.index
        return any(k.current_kprobe is not None for i, k in enumerate(self.ctlblks) if i != me)

    def _spin_on_kprobe_lock(self, machine: Machine, addr: int) -> bool:
        """2.6.12's lock_kprobes() on a CPU that finds the lock taken: it spins until the
        lock is free.  Modelled as waiting: the trap is undone (rip back on the int3, which
        is counted again when it is taken again) and this CPU is not scheduled for the rest
        of its quantum, so the CPU that holds the lock runs on; when its turn comes again
        the int3 traps again and takes the lock if it is free by then (the holder hands it
        over: _hand_over_kprobe_lock).  Its clock does not run while it waits: charging
        the spin to it (a whole quantum per wait) made a CPU that hits many probes spend
        more time spinning than its timer period, a livelock of the model rather than of
        the kernel.  No handler runs meanwhile: handlers never run on two CPUs at once."""
        self.lock_spins += 1
        self.kcb.spinning = True
        machine.set_reg("rip", addr)
        machine.adjust_clock(-1)
        self.say(lambda: f"cpu {machine.cpu_id}: int3 at {machine.image.symbols.format(addr)} while another CPU "
                         "holds kprobe_lock: spinning (2005 serialisation)")
        machine.end_quantum()
        return True

    def _hand_over_kprobe_lock(self, machine: Machine) -> None:
        """unlock_kprobes() with a CPU spinning on the lock: on hardware the spinner sees
        the lock free within a few cycles and takes it, long before this CPU reaches its
        next probe.  So this CPU yields the rest of its quantum, and the spinner's retry
        comes first (without this, the CPU that released would take the lock again at its
        next hit, and a CPU that hits probes often would starve the others)."""
        if machine.ncpus > 1 and any(k.spinning for k in self.ctlblks):
            machine.end_quantum()

    def set_step_mode(self, mode: str) -> None:
        if mode not in STEP_MODES:
            raise ProbeError(f"unknown kprobe step mode '{mode}' (out-of-line, in-place)")
        if any(k.current_kprobe is not None for k in self.ctlblks):
            raise ProbeError("a probe is being handled (the guest stopped mid-step): run on first")
        self.step_mode = mode
        # In-place stepping steps every hit at the probed address: no jump over it.
        for bucket in self.kprobe_table:
            for p in list(bucket):
                self.optimizer.refresh(p)

    def _prepare_singlestep_in_place(self, p: Kprobe, machine: Machine) -> None:
        """The naive single-step: put the original byte back, step the instruction at its own
        address, plant the int3 again in the debug trap (post_kprobe_handler).

        A step takes a trap in, the instruction, and a trap out: on hardware the other CPUs
        run meanwhile, and while the byte is back they run through the probe without
        trapping.  Modelled as: this CPU gives the rest of its quantum up at the int3, the
        other CPUs run their quanta with the original byte in place, and then this CPU steps
        and re-plants.  Each time another CPU starts the instruction in that window is a
        hit the probe never saw: a code hook on the address, on the other CPUs only and only
        while the window is open, counts them (missed_in_place)."""
        kcb = self.kcb
        eflags = machine.eflags
        self.kprobe_saved_rflags = self.kprobe_old_rflags = eflags & (EFLAGS_TF | EFLAGS_IF)
        if p.ainsn.is_if_modifier():
            self.kprobe_saved_rflags &= ~EFLAGS_IF
        kcb.ss_in_place = True
        machine.write(p.addr, bytes([p.opcode]))
        machine.set_reg("eflags", (eflags | EFLAGS_TF) & ~EFLAGS_IF)
        machine.set_reg("rip", p.addr)
        # The int3 was counted; the instruction is counted again when it runs at addr.
        machine.adjust_clock(-1)
        self._rep_count_before = machine.reg("rcx") if p.ainsn.is_rep_string() else None
        others = [c.index for c in machine.cpus if c.index != machine.cpu_id]
        if others and p.addr not in self._in_place_windows:
            self._in_place_windows[p.addr] = machine.add_code_hook(
                p.addr, lambda m, entry=p: self._missed_in_place(entry), cpus=others)
        self.say(lambda: f"single-stepping '{p.ainsn.text}' in place at 0x{p.addr:x}: original byte restored, "
                         "other CPUs run past the probe until the int3 is back")
        machine.end_quantum()

    def _missed_in_place(self, entry: Kprobe) -> None:
        for child in entry.children if isinstance(entry, AggrKprobe) else [entry]:
            child.owner.missed_in_place += 1

    def _close_in_place_window(self, p: Kprobe) -> None:
        """After the in-place step: stop counting misses and plant the int3 again (if the
        address still has an enabled probe)."""
        self.kcb.ss_in_place = False
        handle = self._in_place_windows.pop(p.addr, None)
        if handle is not None:
            self.machine.remove_hook(handle)
        entry = self.get_kprobe(p.addr)
        if entry is not None:
            live = entry.active_children() if isinstance(entry, AggrKprobe) else ([] if entry.disabled else [entry])
            if live:
                self.arm_kprobe(entry)

    # ------------------------------------------------------------------ invariants (tests)
    def check_invariants(self) -> list[str]:
        """Engine invariants; an empty list means all hold."""
        problems = []
        planted = set()
        for bucket in self.kprobe_table:
            for p in bucket:
                live = p.active_children() if isinstance(p, AggrKprobe) else ([] if p.disabled else [p])
                armed = self.machine.read(p.addr, 1)[0] == BREAKPOINT_INSTRUCTION
                op = self.optimizer.active.get(p.addr)
                if op is not None:
                    armed = bool(live)
                    if self.machine.read(p.addr, 5) == jmp_rel32(p.addr, op.entry):
                        planted.update(range(p.addr, p.addr + 5))
                    else:
                        problems.append(f"optimized probe at 0x{p.addr:x}: its jump to the detour is not intact")
                if bool(live) != armed and p.addr not in self._in_place_windows:
                    problems.append(f"probe at 0x{p.addr:x}: armed={armed} but enabled probes={len(live)}")
                planted.add(p.addr)
                if p.slot is not None and self.slots.owner.get(p.slot) is None:
                    problems.append(f"probe at 0x{p.addr:x}: its slot 0x{p.slot:x} is marked free")
        for slot, owner in self.slots.owner.items():
            if owner.slot != slot or self.get_kprobe(owner.addr) is None:
                problems.append(f"slot 0x{slot:x} is owned by a probe that is not registered")
        image = self.machine.image
        for lo, hi in image.text_ranges:
            mem = self.machine.read(lo, hi - lo)
            for seg in image.segments:
                if seg.vaddr == lo:
                    orig = seg.data
                    for i, (a, b) in enumerate(zip(mem, orig)):
                        if a != b and a == BREAKPOINT_INSTRUCTION and lo + i not in planted:
                            problems.append(f"0xcc left at 0x{lo + i:x} where no probe is armed")
        problems.extend(self.kretprobes.check_invariants())
        from .invariants import extra_invariants

        problems.extend(extra_invariants(self))
        return problems



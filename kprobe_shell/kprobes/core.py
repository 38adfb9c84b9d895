"""The architecture-independent kprobes core (kernel/kprobes.c) and its trap entry points.

Names follow the kernel so the two can be read side by side: kprobe_table (64 buckets
hashed by address), register_kprobe / unregister_kprobe, aggregate probes
(aggr_pre_handler and friends), kprobe_handler (the int3 trap), post_kprobe_handler (the
debug trap after the single-step), kprobe_fault_handler, kprobe_running and
kprobe_status.  The engine never prints: it calls handlers and reports through
`listeners` (handler errors, flushes) and, for `explain`, through `narrator` (the
events of narrate.py, rendered there).
"""
from __future__ import annotations

import bisect
import traceback
from typing import Callable

from ..machine import Machine, StopReason
from ..machine.layout import EFLAGS_TF, RESERVED_BASE, RESERVED_END
from .guard import HandlerGuard, HandlerInterrupted, HandlerTimeout, guarded_caller
from .invariants import extra_invariants
from .jprobes import JprobeManager
from .kretprobes import KretprobeManager
from .optimize import KprobeOptimizer
from .narrate import (
    AggregateFormed,
    Armed,
    Boosted,
    DebugTrap,
    Disarmed,
    FlowChanged,
    PostHandlerRuns,
    ProbeHit,
    ReentrantHit,
    TrampolineHit,
)
from .narrate import render as render_narration
from .percpu import KprobeCtlblk, hand_over_kprobe_lock, per_cpu, spin_on_kprobe_lock
from .regs import PtRegs
from .types import (  # noqa: F401  (re-exported: the shell and the API import them from here)
    EXEC_PATH_PATTERNS,
    EXIT_PATH_PATTERNS,
    KPROBE_TABLE_SIZE,
    MODES,
    STEP_MODES,
    AggrKprobe,
    HandlerError,
    Kprobe,
    KprobeStatus,
    ProbeError,
    ProbeMode,
    StepMode,
    describe_handler_exception,
    hash_ptr,
)
from .x86 import (
    BREAKPOINT_INSTRUCTION,
    DecodedInsn,
    InsnSlots,
    _cs,
    arch_prepare_kprobe,
    decode_at,
    jmp_rel32,
    prepare_singlestep,
    prepare_singlestep_in_place,
    rep_string_exit_pass,
    resume_execution,
    want_boost,
)


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

    #: See fast_paths (read on the hot paths, hence a plain attribute).
    inline_fast_paths = True
    #: True (the default): hits of C-recordable probes at jump-optimized addresses record
    #: in C (chits.py); False: every hit takes the Python path, for differential tests.
    #: Read when the optimizer's table is refreshed (before every run).
    c_hits = True

    @property
    def fast_paths(self) -> bool:
        """True (the default): hits take the inlined paths of fastpath.py where they apply.
        False: they take the reference paths those mirror (nothing is jump-optimized, so
        entries go through kprobe_handler; the booster's returns walk the instances with
        _run_return_handlers), for differential tests.  The probes and the addresses they
        plant stay the same, so the guest sees no difference."""
        return self.inline_fast_paths

    @fast_paths.setter
    def fast_paths(self, on: bool) -> None:
        self.inline_fast_paths = bool(on)
        for bucket in self.kprobe_table:
            for p in list(bucket):
                self.optimizer.refresh(p)

    @property
    def kcb(self) -> KprobeCtlblk:
        """get_kprobe_ctlblk(): the control block of the CPU that is running."""
        return self.ctlblks[self.machine.cpu.index]

    def __init__(self, machine: Machine):
        self.machine = machine
        self.ctlblks = [KprobeCtlblk() for _ in range(machine.ncpus)]
        self.step_mode = StepMode.OUT_OF_LINE
        #: addr -> the code hook counting other CPUs' runs through an open in-place window.
        self._in_place_windows: dict[int, int] = {}
        #: Times a CPU hit an int3 while another CPU held the 2005 kprobe_lock and spun.
        self.lock_spins = 0
        self.kprobe_table: list[list[Kprobe]] = [[] for _ in range(KPROBE_TABLE_SIZE)]
        self.slots = InsnSlots(machine)
        self.regs = PtRegs(machine)
        self.mode = ProbeMode.AUTO
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
        self.optimizer = KprobeOptimizer(self)
        # Return probes need their trampoline probe from the start, as the kernel's arch_init.
        self.kretprobes = KretprobeManager(self)
        self.jprobes = JprobeManager(self)

    # ------------------------------------------------------------------ reporting
    def _emit(self, event) -> None:
        for listener in self.listeners:
            listener(event)

    def narrate(self, event) -> None:
        """A narration event (narrate.py) for `explain on`.  Callers check that somebody
        listens (self.narrator is not None) before they build the event, so a probe hit
        pays one attribute test for narration when it is off."""
        self.narrator(render_narration(event, self.machine.image.symbols))

    @guarded_caller
    def _call(self, p: Kprobe, which: str, fn: Callable, *args):
        """Run a user handler; an exception is reported and charged to the probe, never fatal.

        The guard ends a handler that runs past handler-timeout or when Ctrl-C comes
        (HandlerTimeout / HandlerInterrupted are raised inside it).  A handler's
        Whatever a handler raises is its failure, a BaseException too (KeyboardInterrupt,
        SystemExit, a class of its own): the probe path completes, as the kernel's would,
        and a Ctrl-C is honoured after it (_handler_failed asks the guest to stop)."""
        # The guard's bookkeeping is done here, not in guard methods (a method call per
        # handler call is a measurable part of a probe hit): guard.py says why these plain
        # updates are enough (the GIL; the watchdog only reads them).
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
            # The engine's own handler failed: this is a bug of the tool, and stepping on
            # would crash it (the trampoline probe has no slot).  Stop, inspectable.
            name = owner.name or repr(owner)
            self.machine.stop_guest(self.machine.stop_event(
                StopReason.BUG, f"internal error in the engine's {name} ({which}): "
                f"{type(exc).__name__}: {exc}"))
            return
        if isinstance(exc, (HandlerInterrupted, KeyboardInterrupt)):
            self.machine.request_stop()  # Ctrl-C: the guest stops too, whatever the policy
            return
        if self.handler_error_policy == "disable" and not owner.internal:
            # A jprobe's or kretprobe's `disabled` is its kprobe's (read-only on the owner).
            self.disable(getattr(owner, "kp", owner))
        elif self.handler_error_policy == "stop":
            self.machine.stop_guest(
                self.machine.stop_event(StopReason.HANDLER, f"{which} of {owner!r} {describe_handler_exception(exc)}")
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
        why = boundary_refusal(self, addr)
        if why is not None:
            raise ProbeError(why)
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
        """register/unregister from inside a handler: the kernel's may sleep and must not be
        called there; here, a probe unregistering itself mid-hit would lose its slot under
        the step."""
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
            arch_prepare_kprobe(self, p, insn)
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
        if self.narrator is not None:
            self.narrate(AggregateFormed(agg.addr, hash_ptr(agg.addr), len(agg.children), agg.slot, agg.boosted))

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
        """The guest was stopped between the int3 and the out-of-line copy (a handler asked
        to stop, or a breakpoint): its rip is in the slot about to be freed (and filled with
        int3s), where the next run would fault.  Send it back to the probed address, where
        the original instruction now stands, flags as before the step."""
        machine = self.machine
        rip = machine.rip
        if self.slots.slot_of(rip) != entry.slot:
            return
        if rip == entry.slot:
            # The copy has not run: the original will, and be counted; its int3 was.
            machine.set_reg("rip", entry.addr)
            machine.clock.adjust(-1)
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
            entry.boosted = want_boost(self, entry)
        self.optimizer.refresh(entry)

    # ------------------------------------------------------------------ arch: prepare, arm
    def set_mode(self, mode: str) -> None:
        if mode not in ("auto", *MODES):
            raise ProbeError(f"unknown kprobe mode '{mode}' (auto, single-step, boost, optimize)")
        self.mode = ProbeMode(mode)
        for bucket in self.kprobe_table:
            for p in list(bucket):
                p.boosted = want_boost(self, p)
                self.optimizer.refresh(p)

    def arm_kprobe(self, p: Kprobe) -> None:
        self.machine.write(p.addr, bytes([BREAKPOINT_INSTRUCTION]))
        if self.narrator is not None:
            self.narrate(Armed(p.addr, p.opcode))

    def disarm_kprobe(self, p: Kprobe) -> None:
        self.machine.write(p.addr, bytes([p.opcode]))
        if self.narrator is not None:
            self.narrate(Disarmed(p.addr, p.opcode))

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
            return spin_on_kprobe_lock(self, machine, addr)
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
                if self.narrator is not None:
                    self.narrate(ReentrantHit(addr, self._prev[0].owner, p.owner, p.owner.nmissed))
                prepare_singlestep(self, p, machine)
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
        if self.narrator is not None:
            self._narrate_hit(p, addr)
        if p.pre_handler is not None:
            if not isinstance(p, AggrKprobe):
                p.python_hits += 1
                handled = self._call(p, "pre_handler", p.pre_handler, p, regs)
            else:
                handled = p.pre_handler(p, regs)
            if handled:
                # The trampoline's own narration already said where it returns.
                if self.narrator is not None and not p.internal:
                    self.narrate(FlowChanged(machine.rip))
                # The handler moved execution (jprobe, trampoline): no single-step.
                # Only a jprobe (break_handler) stays the running probe until its
                # jprobe_return int3; any other handler that took over is done, so the probe
                # stops running (later kernels' reset_current_kprobe); else every later hit
                # of any probe would count as nmissed.
                taker = p.curr if isinstance(p, AggrKprobe) else p
                if taker is None or taker.break_handler is None:
                    kcb.current_kprobe = None
                    kcb.kprobe_status = None
                return True
        elif not isinstance(p, AggrKprobe):
            p.python_hits += 1
        self._ss_probe(p, machine)
        return True

    def _narrate_hit(self, p: Kprobe, addr: int) -> None:
        if p.internal:
            self.narrate(TrampolineHit(addr))
        elif isinstance(p, AggrKprobe):
            self.narrate(ProbeHit(addr, hash_ptr(addr), None, len(p.active_children()), p.pre_handler is not None))
        else:
            self.narrate(ProbeHit(addr, hash_ptr(addr), p.owner, None, p.pre_handler is not None))

    def _ss_probe(self, p: Kprobe, machine: Machine) -> None:
        if self.optimizer.active and self.optimizer.resume_in_detour(p):
            return  # after a jprobe's longjmp: the copies run in the detour buffer
        if self.step_mode == "in-place":
            prepare_singlestep_in_place(self, p, machine)
            self.kprobe_status = KprobeStatus.HIT_SS
            return
        if p.boosted:
            # Boost: run the copy and the jmp back, no debug trap.
            machine.set_reg("rip", p.slot)
            kcb = self.kcb
            kcb.current_kprobe = None
            kcb.kprobe_status = None
            if self.narrator is not None:
                self.narrate(Boosted(p.addr, p.slot, p.ainsn.text, p.ainsn.length))
            return
        prepare_singlestep(self, p, machine)
        self.kprobe_status = KprobeStatus.HIT_SS

    def post_kprobe_handler(self, machine: Machine) -> bool:
        """The debug trap after the step: post_handler, resume_execution, flags back."""
        cur = self.current_kprobe
        if cur is None or self.kprobe_status not in (KprobeStatus.HIT_SS, KprobeStatus.REENTER):
            return False
        regs = self.regs
        narrate = self.narrator is not None
        if narrate:
            self.narrate(DebugTrap(machine.rip, machine.reg("rsp")))
        if self.kprobe_status is not KprobeStatus.REENTER and cur.post_handler is not None:
            if narrate:
                self.narrate(PostHandlerRuns())
            self.kprobe_status = KprobeStatus.HIT_SSDONE
            if isinstance(cur, AggrKprobe):
                cur.post_handler(cur, regs, 0)
            else:
                self._call(cur, "post_handler", cur.post_handler, cur, regs, 0)
        resume_execution(self, cur, machine)
        rep_string_exit_pass(self, cur, machine)
        machine.set_reg("eflags", (machine.eflags & ~EFLAGS_TF) | self.kprobe_saved_rflags)
        if self.kcb.ss_in_place:
            self._close_in_place_window(cur)
        if self.kprobe_status is KprobeStatus.REENTER:
            self._restore_previous_kprobe()
        else:
            self.current_kprobe = None
            self.kprobe_status = None
            hand_over_kprobe_lock(self, machine)
        return True

    def kprobe_fault_handler(self, machine: Machine, trapnr: int) -> bool:
        """A fault while a probe is active: its fault_handler first, else undo the step."""
        cur = self.current_kprobe
        if cur is None:
            # A boosted copy faulted (no probe is running then): make the fault
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

    def set_step_mode(self, mode: str) -> None:
        if mode not in STEP_MODES:
            raise ProbeError(f"unknown kprobe step mode '{mode}' (out-of-line, in-place)")
        if any(k.current_kprobe is not None for k in self.ctlblks):
            raise ProbeError("a probe is being handled (the guest stopped mid-step): run on first")
        self.step_mode = StepMode(mode)
        # In-place stepping steps every hit at the probed address: no jump over it.
        for bucket in self.kprobe_table:
            for p in list(bucket):
                self.optimizer.refresh(p)

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
        problems.extend(extra_invariants(self))
        return problems


def boundary_refusal(engine: "KprobeEngine", addr: int) -> str | None:
    """Why ADDR, inside a function, is no place for an int3 (the middle of an
    instruction: the nearest boundaries are named), or None."""
    hit = engine.machine.symbols.containing(addr)
    if hit is None or not hit[0].size or not hit[0].contains(addr):
        return None
    sym, off = hit
    bounds = engine.instruction_boundaries(sym.address)
    if addr in bounds:
        return None
    i = bisect.bisect_left(bounds, addr)
    before = bounds[i - 1] if i > 0 else None
    after = bounds[i] if i < len(bounds) else None
    near = ", ".join(f"{sym.name}+0x{b - sym.address:x}" for b in (before, after) if b is not None)
    return f"{sym.name}+0x{off:x} is not an instruction boundary (nearest: {near})"

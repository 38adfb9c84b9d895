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


class Kprobe:
    """struct kprobe: a probe on one instruction, with its handlers and counters."""

    kind = "k"

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
            if self.engine._call(child, "pre_handler", child.pre_handler, child, regs):
                return 1
        return 0

    def _aggr_post_handler(self, p, regs, flags) -> None:
        for child in self.active_children():
            if child.post_handler is not None:
                self.curr = child
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
        return f"{self.handler} of {self.probe.owner!r} raised {type(self.exception).__name__}: {self.exception} ({self.where})"


#: Functions still running when the 2005 kernel calls kprobe_flush_task, so their return
#: probes lose their instance (see kretprobes.py): the exec chain down to flush_thread, and
#: exit_thread on the exit path (do_exit never returns, so it is safe).
EXEC_PATH_PATTERNS = ("sys_execve", "do_execve", "search_binary_handler", "load_*_binary", "flush_old_exec",
                      "flush_thread")
EXIT_PATH_PATTERNS = ("exit_thread", "kprobe_flush_task")


class KprobeEngine:
    """All probes of one machine: the table, the trap paths, the per-CPU state."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self.kprobe_table: list[list[Kprobe]] = [[] for _ in range(KPROBE_TABLE_SIZE)]
        self.slots = InsnSlots(machine)
        self.regs = PtRegs(machine)
        self.mode = "auto"  # "auto" (boost when safe), "single-step", "boost"
        #: What to do when a handler raises: "continue", "disable" the probe, or "stop" the guest.
        self.handler_error_policy = "continue"
        self.listeners: list[Callable[[object], None]] = []
        self.narrator: Callable[[str], None] | None = None
        # Per-CPU state (one CPU): the kernel's current_kprobe, kprobe_status and saved flags.
        self.current_kprobe: Kprobe | None = None
        self.kprobe_status: KprobeStatus | None = None
        self.kprobe_saved_rflags = 0
        self.kprobe_old_rflags = 0
        self._prev: tuple | None = None  # save_previous_kprobe
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
            self.narrator(text() if callable(text) else text)

    def _call(self, p: Kprobe, which: str, fn: Callable, *args):
        """Run a user handler; an exception is reported and charged to the probe, never fatal."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a handler may raise anything
            self._handler_failed(p, which, exc)
            return 0

    def _handler_failed(self, p: Kprobe, which: str, exc: BaseException) -> None:
        owner = p.owner
        owner.faults += 1
        tb = traceback.extract_tb(exc.__traceback__)
        here = __file__.rsplit("/", 2)[0]
        frames = [f for f in tb if not f.filename.startswith(here)] or list(tb)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        self._emit(HandlerError(owner, which, exc, where))
        if self.handler_error_policy == "disable" and not owner.internal:
            self.disable(owner)
        elif self.handler_error_policy == "stop":
            self.machine.stop_guest(
                self.machine._event(StopReason.HANDLER, f"{which} of {owner!r} raised {type(exc).__name__}: {exc}")
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
            raise ProbeError(f"0x{addr:x} ({where}) is outside the image's text: only code can be probed")
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
    def register_kprobe(self, p: Kprobe) -> Kprobe:
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
        self.say(lambda: f"second probe at {self.machine.image.symbols.format(agg.addr)}: an aggregate manages {len(agg.children)} probes")

    def unregister_kprobe(self, p: Kprobe) -> None:
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
        if insn.rip_disp_offset is not None:
            self.say(lambda: 
                f"copied '{insn.text}' to slot 0x{slot:x} and re-targeted its RIP-relative displacement"
            )

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

    def disarm_kprobe(self, p: Kprobe) -> None:
        self.machine.write(p.addr, bytes([p.opcode]))

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
        p = self.get_kprobe(addr)
        if self.kprobe_running():
            if p is not None:
                if self.kprobe_status is KprobeStatus.HIT_SS:
                    # An int3 inside the step itself: not ours to handle.
                    return False
                # A probe hit while another probe's handler runs: step it, call nothing.
                self._save_previous_kprobe()
                self.current_kprobe = p
                self._inc_nmissed(p)
                self.say(lambda: f"probe at {machine.image.symbols.format(addr)} hit inside a handler: nmissed, no handlers run")
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
        self.current_kprobe = p
        self.kprobe_status = KprobeStatus.HIT_ACTIVE
        self.say(lambda: f"int3 at {machine.image.symbols.format(addr)}: probe found, running its pre_handler")
        if p.pre_handler is not None:
            if not isinstance(p, AggrKprobe):
                p.hits += 1
                handled = self._call(p, "pre_handler", p.pre_handler, p, regs)
            else:
                handled = p.pre_handler(p, regs)
            if handled:
                # The handler moved execution (jprobe, trampoline): no single-step.
                # [tests fix] Only a jprobe (break_handler) stays the running probe until its
                # jprobe_return int3; any other handler that took over is done, so the probe
                # stops running (later kernels' reset_current_kprobe).  Before, it stayed
                # current forever and every later hit of any probe counted as nmissed.
                taker = p.curr if isinstance(p, AggrKprobe) else p
                if taker is None or taker.break_handler is None:
                    self.current_kprobe = None
                    self.kprobe_status = None
                return True
        elif not isinstance(p, AggrKprobe):
            p.hits += 1
        self._ss_probe(p, machine)
        return True

    def _ss_probe(self, p: Kprobe, machine: Machine) -> None:
        if self.optimizer.active and self.optimizer.resume_in_detour(p):
            return  # after a jprobe's longjmp: the copies run in the detour buffer
        if p.boosted:
            # Boost: run the copy and the jmp back, no debug trap.
            machine.set_reg("rip", p.slot)
            self.current_kprobe = None
            self.kprobe_status = None
            self.say(lambda: f"boosted: running the copy in slot 0x{p.slot:x}, then jmp back to 0x{p.addr + p.ainsn.length:x}")
            return
        self._prepare_singlestep(p, machine)
        self.kprobe_status = KprobeStatus.HIT_SS

    def _prepare_singlestep(self, p: Kprobe, machine: Machine) -> None:
        eflags = machine.eflags
        self.kprobe_saved_rflags = self.kprobe_old_rflags = eflags & (EFLAGS_TF | EFLAGS_IF)
        if p.ainsn.is_if_modifier():
            self.kprobe_saved_rflags &= ~EFLAGS_IF
        machine.set_reg("eflags", (eflags | EFLAGS_TF) & ~EFLAGS_IF)
        machine.set_reg("rip", p.slot)
        self._rep_count_before = machine.reg("rcx") if p.ainsn.is_rep_string() else None
        self.say(lambda: f"single-stepping '{p.ainsn.text}' out of line in slot 0x{p.slot:x} (TF set, IF cleared)")

    def post_kprobe_handler(self, machine: Machine) -> bool:
        """The debug trap after the step: post_handler, resume_execution, flags back."""
        cur = self.current_kprobe
        if cur is None or self.kprobe_status not in (KprobeStatus.HIT_SS, KprobeStatus.REENTER):
            return False
        regs = self.regs
        if self.kprobe_status is not KprobeStatus.REENTER and cur.post_handler is not None:
            self.kprobe_status = KprobeStatus.HIT_SSDONE
            if isinstance(cur, AggrKprobe):
                cur.post_handler(cur, regs, 0)
            else:
                self._call(cur, "post_handler", cur.post_handler, cur, regs, 0)
        self.resume_execution(cur, machine)
        self._rep_string_exit_pass(cur, machine)
        machine.set_reg("eflags", (machine.eflags & ~EFLAGS_TF) | self.kprobe_saved_rflags)
        if self.kprobe_status is KprobeStatus.REENTER:
            self._restore_previous_kprobe()
        else:
            self.current_kprobe = None
            self.kprobe_status = None
        return True

    def resume_execution(self, p: Kprobe, machine: Machine) -> None:
        """Fix rip and the stack after the copy ran in the slot (the table in the docs)."""
        insn = p.ainsn
        copy_rip, orig_rip = p.slot, p.addr
        rsp = machine.reg("rsp")
        kind = insn.fixup_kind()
        fix_rip = True
        if kind == "pushf":
            tos = machine.read_u64(rsp)
            machine.write_u64(rsp, (tos & ~(EFLAGS_TF | EFLAGS_IF)) | self.kprobe_old_rflags)
        elif kind in ("ret/iret: rip absolute", "indirect jmp: rip absolute", "far jmp: rip absolute"):
            fix_rip = False
        elif kind == "call rel32":
            tos = machine.read_u64(rsp)
            machine.write_u64(rsp, orig_rip + (tos - copy_rip))
        elif kind == "indirect call":
            tos = machine.read_u64(rsp)
            machine.write_u64(rsp, orig_rip + (tos - copy_rip))
            fix_rip = False
        if fix_rip:
            machine.set_reg("rip", orig_rip + (machine.rip - copy_rip))
        self.say(lambda: f"debug trap after the step: fix-up '{kind}', rip = {machine.image.symbols.format(machine.rip)}")

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
        self._prev = (self.current_kprobe, self.kprobe_status, self.kprobe_saved_rflags, self.kprobe_old_rflags)

    def _restore_previous_kprobe(self) -> None:
        self.current_kprobe, self.kprobe_status, self.kprobe_saved_rflags, self.kprobe_old_rflags = self._prev
        self._prev = None

    # ------------------------------------------------------------------ invariants (tests)
    def check_invariants(self) -> list[str]:
        """Engine invariants; an empty list means all hold."""
        problems = []
        planted = set()
        for bucket in self.kprobe_table:
            for p in bucket:
                live = p.active_children() if isinstance(p, AggrKprobe) else ([] if p.disabled else [p])
                armed = self.machine.read(p.addr, 1)[0] == BREAKPOINT_INSTRUCTION
                if p.addr in self.optimizer.active:
                    armed = bool(live)
                    planted.update(range(p.addr, p.addr + 5))
                if bool(live) != armed:
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
        return problems



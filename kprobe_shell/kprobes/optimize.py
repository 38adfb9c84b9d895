"""Jump optimization: the kernel's optprobes (2.6.36, kernel/kprobes.c and
arch/x86/kernel/kprobes/opt.c), on the emulated CPU.

An int3 probe costs a trap per hit.  An optimized probe replaces the probed instruction,
and the following ones until 5 bytes are covered, with `jmp rel32` to a detour:

    probed address:  jmp DETOUR_ENTRY          (5 bytes; the rest of the range is dead)
    detour entry:    jmp DETOUR_BUFFER         <- the engine's code hook fires here
    detour buffer:   copy of insn 1            (RIP-relative operands re-targeted)
                     copy of insn 2 ...
                     jmp addr+length           (back to the instruction after the range)

The hook on the entry is one host transition with no write to rip (the cheapest way to
catch a hit in unicorn: scripts/bench.py shows it as "the floor"); the handler then returns and the CPU
runs the copies where it is.  All detour entries are contiguous, and the clock's C hook
(which already covers the tool's pages) dispatches to one callback for all of them:
adding probes never lengthens unicorn's hook list, which it walks on every hooked
instruction.

The kernel's safety checks (can_optimize / can_optimize_insns):
  - whole instructions only, the whole range inside one function;
  - nothing that cannot run relocated: relative jumps and calls, indirect jumps and calls,
    returns, int3/int/hlt, what changes IF, pushf, rep string instructions (the same set
    the booster refuses, kprobes/x86.py: boostable);
  - no jump from anywhere in the image into the replaced bytes past the first, and no
    indirect jump in the function (a jump table could land there);
  - no other probe inside the replaced bytes (registering one there unoptimizes first);
  - no post_handler (it needs the debug trap after the step, the kernel refuses too) and
    no fault_handler (a fault in the copy must reach it, as in boost mode).

Planting follows the kernel: register_kprobe arms the int3 first, so the probe works at
once; optimization is the delayed work (the kernel's kprobe_optimizer worker).  Here it
happens as soon as the guest is stopped: immediately when a probe is registered while
stopped, else at the start of the next run.  Before writing the jump, the optimizer
makes sure no task can resume inside the bytes it overwrites (the kernel's
synchronize_sched): the current rip and every return point on the guest's stacks are
checked; if one lies inside, the probe stays an int3 probe until a later stop.

SMP: with more than one CPU nothing is optimized; the probes fall back to boost (or
single-step) and `probes` says "not optimized: SMP (no stop_machine model)".  Writing a
5-byte jump over several instructions while another CPU may be executing inside them, or
may resume there, is why the kernel writes it under stop_machine (text_poke_smp); the
engine models the 2005 global kprobe_lock and in-place stepping on SMP (percpu.py,
core.py), and an optimized hit would bypass both: it takes no int3, so it neither waits
for the lock nor opens an in-place window.  The kretprobe booster has no such problem
(see kretprobes.py): it works on SMP.

Detour buffers are never reused for other code: a task interrupted by the timer inside
a detour (its saved rip points into the copies) may be switched out for a long time,
and must find the same copies when it resumes, even after its probe was unoptimized or
unregistered.  One buffer per probed address is built once and kept.

The instruction clock stays exact: the `jmp` at the probed address is counted (in the
image's text) and stands for instruction 1; the relocated copies of instructions 2..n
are counted by the clock's C hook, which covers the detour pages too and counts there by
a byte map (_clock.c); it checks the timer deadline before each, so a tick lands before the same guest
instruction as without the probe (with rip in the detour; the return lands back there).
The copy of instruction 1, the detour entry and the jump back are not counted.

A pre_handler that moves execution (a jprobe's setjmp) leaves rip where it put it, so
the copies do not run then (as the kernel skips them when regs->ip changed); when the
jprobe handler returns (longjmp) the copies run from the detour buffer.
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING


from ..machine.layout import (
    BOOT_STACK_BASE,
    DETOUR_BASE,
    DETOUR_END,
    DETOUR_ENTRY_BASE,
    PAGE_SIZE,
    RESERVED_END,
)
from .chits import HIT_HOOK, CHits
from .fastpath import optimized_callback
from .narrate import Optimized, Unoptimized
from .types import BOOSTED_MODES, ProbeError, Refusal
from .x86 import BREAKPOINT_INSTRUCTION, DecodedInsn, _cs, copy_for_slot, decode_at, jmp_rel32

if TYPE_CHECKING:
    from .core import KprobeEngine
    from .types import Kprobe

#: Why nothing is optimized on a machine with several CPUs (see the module docs).
SMP_REFUSAL = "SMP (no stop_machine model)"

#: Bytes the `jmp rel32` at the probed address takes (the kernel's RELATIVEJUMP_SIZE).
RELATIVEJUMP_SIZE = 5
DETOUR_ENTRY_SIZE = 8
#: A buffer holds at most 4 + 15 bytes of copies (instructions covering 5 bytes) + the jmp back.
DETOUR_BUFFER_SIZE = 32


@dataclass(eq=False)
class Optprobe:
    """struct optimized_kprobe: the detour of one probed address (built once, kept)."""

    addr: int
    length: int                 # bytes replaced: whole instructions, >= 5
    insns: list[DecodedInsn]
    original: bytes             # the replaced bytes as the image has them
    entry: int = 0              # the detour entry: the `jmp` the hook fires on
    buffer: int = 0             # the relocated copies, then `jmp addr+length`
    copies: list[int] = field(default_factory=list)  # where each relocated instruction stands
    kp: "Kprobe | None" = None  # the table entry the hook runs (a probe or an aggregate)
    active: bool = False        # the jump is planted
    is_aggr: bool = False

    def guest_address(self, a: int) -> int:
        """The guest instruction a detour address stands for."""
        if a == self.entry:
            return self.addr
        for copy, insn in zip(reversed(self.copies), reversed(self.insns)):
            if a >= copy:
                return insn.address if a < copy + insn.length else self.addr + self.length
        return self.addr


class KprobeOptimizer:
    """The optimizer: can_optimize, arch_optimize_kprobe / arch_unoptimize_kprobe, the
    detour buffers, and optimized_callback (the hit path)."""

    def __init__(self, engine: "KprobeEngine"):
        self.engine = engine
        self.machine = engine.machine
        #: Detours by probed address (kept for the machine's life, see the module docs).
        self.optprobes: dict[int, Optprobe] = {}
        #: Probed address -> its optprobe, for the probes optimized now.
        self.active: dict[int, Optprobe] = {}
        self._by_entry: dict[int, Optprobe] = {}
        self._buffers: list[int] = []  # buffer addresses in allocation (= address) order
        self._buffer_owner: list[Optprobe] = []
        self._next_entry = DETOUR_ENTRY_BASE
        self._next_buffer = DETOUR_BASE
        self._counted = None  # the C detour counter's byte map, once installed
        self.c_hits: CHits | None = None  # the C hook's table, once installed
        self._unsafe_ranges: dict[int, str] = {}  # addr -> why it can never be optimized
        self._branch_targets: dict[int, int] | None = None  # target -> a source, whole image
        self._indirect_jump_funcs: set[int] | None = None
        self._return_points: set[int] | None = None  # saved rips on the guest's stacks, per stop
        self._pending: set[int] = set()  # addresses to look at again when the guest is stopped
        self._shown_ip = engine.regs.shown_ip
        self._regs = engine.regs
        self._kcb = engine.ctlblks[0]  # the hit path's (see optimized_callback)
        self.machine.before_run.append(self.kprobe_optimizer)
        self.machine.after_run.append(self.leave_detour_at_stop)
        self.machine.address_translators.append(self.guest_address_of)
        # A breakpoint (a code hook) inside replaced bytes would never fire: the guest runs
        # the copy in the detour.  Unoptimize first, and never optimize over one.
        self.machine.code_hook_watchers.append(self.unoptimize_covering)

    # ------------------------------------------------------------------ the hit path
    #: The hit, a fast hook on every detour entry (fastpath.py).
    optimized_callback = optimized_callback

    def resume_in_detour(self, p: "Kprobe") -> bool:
        """After a jprobe's longjmp: run the replaced instructions from the detour buffer
        (the int3 path would step the copy in the slot).  False when p is not optimized."""
        op = self.active.get(p.addr)
        if op is None:
            return False
        self.machine.set_reg("rip", op.buffer)
        self.engine.current_kprobe = None
        self.engine.kprobe_status = None
        return True

    # ------------------------------------------------------------------ deciding
    def wanted(self, entry: "Kprobe") -> str | None:
        """None when entry may be optimized now; else why not (shown by `probes`)."""
        engine = self.engine
        if engine.mode not in BOOSTED_MODES:
            return f"kprobe-mode is {engine.mode}"
        if not engine.inline_fast_paths:
            return "the fast paths are off (KprobeEngine.fast_paths)"
        if self.machine.ncpus > 1:
            return SMP_REFUSAL
        if engine.step_mode == "in-place":
            return "kprobe-step is in-place (every hit is single-stepped at the probed address)"
        if entry.internal:
            return "the engine's own probe"
        children = entry.children if hasattr(entry, "children") else [entry]
        if not any(not c.disabled for c in children):
            return "disabled"
        if any(c.post_handler is not None for c in children):
            return "it has a post_handler, which needs the debug trap after the step (the kernel refuses too)"
        if any(c.fault_handler is not None for c in children):
            return "it has a fault_handler: a fault in the relocated copy would not reach it"
        op = self.prepare(entry.addr)
        if isinstance(op, str):
            return op
        for other in self._probes_inside(op):
            return self._probe_inside_refusal(other, op)
        if op.active:
            return None  # already planted: nothing to wait for
        return self._resume_point_inside(op)

    def refresh(self, entry: "Kprobe") -> None:
        """Optimize or unoptimize the table entry at entry.addr as wanted now."""
        op = self.active.get(entry.addr)
        if op is not None:
            op.kp = entry
            op.is_aggr = hasattr(entry, "children")
        if self.machine.running and op is None:
            # Registered from a handler: the jump is written when the guest is stopped
            # (the kernel's delayed optimizer), the int3 does the work meanwhile.
            self._pending.add(entry.addr)
            entry.optimize_refusal = Refusal("waiting for the guest to stop (the optimizer's delayed work)", transient=True)
            return
        why = self.wanted(entry)
        entry.optimize_refusal = why
        if why is None and op is None:
            self.arch_optimize_kprobe(entry)
        elif why is not None and op is not None:
            self.arch_unoptimize_kprobe(op, armed=self._live(entry))
        if isinstance(why, Refusal) and why.transient:
            self._pending.add(entry.addr)

    def kprobe_optimizer(self) -> None:
        """Before a run (the guest is stopped): the delayed optimizations."""
        self._return_points = None  # the stacks may have changed since the last stop
        if self.engine.mode in BOOSTED_MODES:
            # Refusals that may have gone away (a breakpoint removed, a task moved on).
            for bucket in self.engine.kprobe_table:
                for entry in bucket:
                    why = entry.optimize_refusal
                    if isinstance(why, Refusal) and why.transient and entry.addr not in self.active:
                        self._pending.add(entry.addr)
        pending, self._pending = self._pending, set()
        for addr in sorted(pending):
            entry = self.engine.get_kprobe(addr)
            if entry is not None:
                self.refresh(entry)
        # What decides C or Python (handlers, explain, the shell's probes) changes only
        # while the guest is stopped, or with an optimization, which refreshes too.
        self.refresh_c_hits()

    def leave_detour_at_stop(self, event) -> None:
        """A run ended with the CPU in a detour buffer (an instruction budget or the
        timer deadline reached before a relocated copy): put it where the guest's own
        instruction is, so that registers, `bt` and a comparison with an unprobed run all
        see the guest's state.  Before copy k >= 2 the jump has to go (the CPU resumes in
        the original bytes; the probe is an int3 probe until a later stop, when the
        optimizer finds no CPU inside the range any more).  At the jump back, rip simply
        moves to addr+length.  Before the first copy (a handler asked to stop) the CPU
        stays: the handlers ran, and resuming at the probed address would run them again.
        """
        machine = self.machine
        rip = machine.rip
        if not DETOUR_BASE <= rip < DETOUR_END:
            return
        i = bisect.bisect_right(self._buffers, rip) - 1
        op = self._buffer_owner[i]
        if rip == op.copies[0]:
            return
        orig = op.guest_address(rip)
        if orig != op.addr + op.length:
            if op.active:
                self.arch_unoptimize_kprobe(op, armed=True)
                self._pending.add(op.addr)
                if op.kp is not None:
                    op.kp.optimize_refusal = Refusal(
                        "the guest stopped inside its replaced bytes: optimized again at a later stop", transient=True)
        machine.set_reg("rip", orig)
        event.rip = orig

    def unoptimize_covering(self, addr: int) -> None:
        """A probe is going on addr: unoptimize any probe whose replaced bytes cover it
        (the kernel's get_optimized_kprobe + unoptimize on register)."""
        for a in range(addr - 1, addr - DETOUR_BUFFER_SIZE, -1):
            op = self.active.get(a)
            if op is not None and a < addr < a + op.length:
                self.arch_unoptimize_kprobe(op, armed=True)
                if op.kp is not None:
                    op.kp.optimize_refusal = self._probe_inside_refusal(addr, op)
                if self.machine.running:
                    self._pending.add(a)

    def reconsider_near(self, addr: int) -> None:
        """A probe at addr went away: the probes just before it may be optimizable now."""
        for a in range(addr - 1, addr - DETOUR_BUFFER_SIZE, -1):
            entry = self.engine.get_kprobe(a)
            if entry is not None and a not in self.active:
                self.refresh(entry)

    def _probe_inside_refusal(self, other: int, op: Optprobe) -> Refusal:
        return Refusal(f"another probe at {self.machine.image.symbols.format(other)} lies inside the "
                       f"{op.length} bytes the jump would replace", transient=True)

    def _live(self, entry: "Kprobe") -> bool:
        children = entry.children if hasattr(entry, "children") else [entry]
        return any(not c.disabled for c in children)

    # ------------------------------------------------------------------ the kernel's checks
    def prepare(self, addr: int) -> Optprobe | str:
        """The detour for addr (built once), or why addr can never be optimized."""
        op = self.optprobes.get(addr)
        if op is not None:
            return op
        why = self._unsafe_ranges.get(addr)
        if why is not None:
            return why
        result = self._can_optimize(addr)
        if isinstance(result, str):
            self._unsafe_ranges[addr] = result
            return result
        try:
            self._build_detour(result)
        except ProbeError as exc:
            self._unsafe_ranges[addr] = str(exc)
            return str(exc)
        self.optprobes[addr] = result
        return result

    def _can_optimize(self, addr: int) -> Optprobe | str:
        """can_optimize: whole instructions covering 5 bytes, all safe to relocate, inside
        one function, with no jump into them from elsewhere."""
        image = self.machine.image
        syms = image.symbols
        hit = syms.containing(addr)
        if hit is None or not hit[0].size:
            return "not inside a function"
        sym, off = hit
        code = image.symbol_bytes(sym)
        insns: list[DecodedInsn] = []
        a = addr
        while a - addr < RELATIVEJUMP_SIZE:
            if a >= sym.end:
                return f"{sym.name} ends {sym.end - addr} bytes after the probe: no room for a 5-byte jump"
            insn = decode_at(code[a - sym.address: a - sym.address + 15], a)
            if insn is None:
                return f"cannot decode the instruction at {syms.format(a)}"
            if a + insn.length > sym.end:
                return f"the instruction at {syms.format(a)} runs past the end of {sym.name}"
            why = insn.classified.relocation_refusal
            if why:
                return f"'{insn.text}' at {syms.format(a)} cannot run relocated: {why}"
            insns.append(insn)
            a += insn.length
        length = a - addr
        targets = self._jump_targets()
        for t in range(addr + 1, addr + length):
            if t in targets:
                return (f"a jump at {syms.format(targets[t])} lands at {syms.format(t)}, inside the "
                        f"{length} bytes the jump would replace")
        i = bisect.bisect_right(syms._addresses, addr)
        for other in syms._sorted[i: i + 1]:
            if other.address < addr + length:
                # A label is an address somebody may jump to (code, or a handler setting rip).
                return (f"the symbol {other.name} at {syms.format(other.address)} is inside the "
                        f"{length} bytes the jump would replace")
        if sym.address in self._functions_with_indirect_jumps():
            return f"{sym.name} has an indirect jump (a jump table could land inside the replaced bytes)"
        return Optprobe(addr, length, insns, bytes(code[off: off + length]))

    def _jump_targets(self) -> dict[int, int]:
        """Every direct jump/call/loop target in the image's functions -> one source
        (decoded once, from the image file's bytes, so planted probes do not matter)."""
        if self._branch_targets is None:
            self._scan_branches()
        return self._branch_targets

    def _functions_with_indirect_jumps(self) -> set[int]:
        if self._indirect_jump_funcs is None:
            self._scan_branches()
        return self._indirect_jump_funcs

    def _scan_branches(self) -> None:
        image = self.machine.image
        targets: dict[int, int] = {}
        indirect: set[int] = set()
        for sym in image.symbols.functions():
            if not sym.size:
                continue
            for address, _size, mnemonic, op_str in _cs.disasm_lite(image.symbol_bytes(sym), sym.address):
                if mnemonic[0] == "j" or mnemonic.startswith(("call", "loop")):
                    if op_str.startswith("0x"):
                        targets.setdefault(int(op_str, 16), address)
                    elif mnemonic == "jmp":
                        indirect.add(sym.address)
        self._branch_targets, self._indirect_jump_funcs = targets, indirect

    def _probes_inside(self, op: Optprobe) -> list[int]:
        """Probes and code hooks (breakpoints) on the bytes the jump would replace."""
        get = self.engine.get_kprobe
        hooked = set(self.machine.hooked_addresses.values())
        return [a for a in range(op.addr + 1, op.addr + op.length) if get(a) is not None or a in hooked]

    def _resume_point_inside(self, op: Optprobe) -> Refusal | None:
        """The kernel's synchronize_sched() before the jump is written: no CPU may be in,
        and no task may resume into, the bytes past the first."""
        points = self._resume_points()
        for a in range(op.addr + 1, op.addr + op.length):
            if a in points:
                return Refusal(f"a task may resume at {self.machine.image.symbols.format(a)}, inside the "
                               "replaced bytes: the jump is written at a later stop", transient=True)
        return None

    def _resume_points(self) -> set[int]:
        """rip, and every 8-byte value on the guest's stacks that points into its text
        (interrupt frames of preempted tasks among them): conservative, cached per stop."""
        if self._return_points is not None and not self.machine.running:
            return self._return_points
        machine = self.machine
        points = {machine.rip}
        _base, limit = machine.interrupts.idtr()
        if limit:  # without an IDT no interrupt or exception frame can exist
            lo, hi = machine.image.text_span
            areas = [(BOOT_STACK_BASE, RESERVED_END - BOOT_STACK_BASE)]
            lay = machine.tasks.layout
            if lay is not None:
                areas += [(t.stack, lay["stack_size"]) for t in machine.tasks.all() if t.stack]
            for start, size in areas:
                try:
                    data = machine.read(start & ~7, size)
                except Exception:  # noqa: BLE001 - an unmapped stack holds nothing to resume
                    continue
                points.update(v for (v,) in struct.iter_unpack("<Q", data[: len(data) & ~7]) if lo <= v < hi)
        self._return_points = points
        return points

    # ------------------------------------------------------------------ building and planting
    def _install_hooks(self) -> None:
        """One code hook on all detour entries, one C counter on all detour buffers: set up
        before the first detour is written, because unicorn decides which instructions
        call a hook when it translates them."""
        machine = self.machine
        self._counted = machine.count_in_detours(DETOUR_BASE, DETOUR_END - DETOUR_BASE)
        # The hook is C (chits.py): it records the C-recordable probes' hits itself and
        # calls optimized_callback for the others.
        self.c_hits = CHits(self, DETOUR_ENTRY_BASE, DETOUR_ENTRY_SIZE,
                            (DETOUR_BASE - DETOUR_ENTRY_BASE) // DETOUR_ENTRY_SIZE, self.optimized_callback)
        self.c_hits.install(HIT_HOOK, DETOUR_ENTRY_BASE, DETOUR_BASE - 1)

    def _build_detour(self, op: Optprobe) -> None:
        """arch_prepare_optimized_kprobe: allocate the entry and buffer, write the copies."""
        machine = self.machine
        if self._counted is None:
            self._install_hooks()
        if self._next_entry + DETOUR_ENTRY_SIZE > DETOUR_BASE or self._next_buffer + DETOUR_BUFFER_SIZE > DETOUR_END:
            raise ProbeError("out of detour buffers")
        entry, buffer = self._next_entry, self._next_buffer
        code = bytearray()
        copies = []
        for insn in op.insns:
            copies.append(buffer + len(code))
            code += copy_for_slot(insn, buffer + len(code))  # raises when RIP-relative cannot reach
        code += jmp_rel32(buffer + len(code), op.addr + op.length)
        for page in {entry & ~(PAGE_SIZE - 1), buffer & ~(PAGE_SIZE - 1), (buffer + len(code) - 1) & ~(PAGE_SIZE - 1)}:
            machine.map_tool_page(page)
        machine.write(entry, jmp_rel32(entry, buffer))
        machine.write(buffer, bytes(code))
        # Instruction 1 is counted at the probed address (its `jmp`): count the copies of
        # instructions 2..n, where the timer deadline is checked as for the originals.
        for copy in copies[1:]:
            self._counted[copy - DETOUR_BASE] = 1
        self._next_entry += DETOUR_ENTRY_SIZE
        self._next_buffer += DETOUR_BUFFER_SIZE
        op.entry, op.buffer, op.copies = entry, buffer, copies
        self._by_entry[entry] = op
        self._buffers.append(buffer)
        self._buffer_owner.append(op)

    def arch_optimize_kprobe(self, entry: "Kprobe") -> None:
        """Replace the int3 (and the bytes after it) by `jmp detour entry`."""
        op = self.optprobes[entry.addr]
        op.kp = entry
        op.is_aggr = hasattr(entry, "children")
        self.machine.write(op.addr, jmp_rel32(op.addr, op.entry))
        op.active = True
        self.active[op.addr] = op
        if self.c_hits is not None:
            self.c_hits.update(op)
        if self.engine.narrator is not None:
            self.engine.narrate(Optimized(op.addr, len(op.insns), op.length, op.entry))

    def arch_unoptimize_kprobe(self, op: Optprobe, *, armed: bool) -> None:
        """Put the replaced bytes back, with the int3 when the probe is still armed.  The
        detour stays as it is: a task may still be inside it (see the module docs)."""
        data = bytearray(op.original[:RELATIVEJUMP_SIZE])
        if armed:
            data[0] = BREAKPOINT_INSTRUCTION
        self.machine.write(op.addr, bytes(data))
        op.active = False
        del self.active[op.addr]
        if self.c_hits is not None:
            self.c_hits.update(op)
        if self.engine.narrator is not None:
            self.engine.narrate(Unoptimized(op.addr))

    def refresh_c_hits(self) -> None:
        """Say again which detour entries record in C (see chits.py)."""
        if self.c_hits is not None:
            self.c_hits.refresh()

    # ------------------------------------------------------------------ views
    def replaced_bytes(self) -> dict[int, bytes]:
        """Probed address -> the original bytes under its planted jump (for `x`, `disas`,
        and memory as the guest would see it without probes)."""
        return {addr: op.original[:RELATIVEJUMP_SIZE] for addr, op in self.active.items()}

    @staticmethod
    def in_detour(a: int) -> bool:
        return DETOUR_ENTRY_BASE <= a < DETOUR_END

    def guest_address_of(self, a: int) -> int | None:
        """A detour address -> the guest instruction it stands for (reports, `bt`); an
        instruction slot address -> its probe's address."""
        if DETOUR_ENTRY_BASE <= a < DETOUR_BASE:
            op = self._by_entry.get(a - (a - DETOUR_ENTRY_BASE) % DETOUR_ENTRY_SIZE)
            return op.addr if op is not None else None
        if DETOUR_BASE <= a < DETOUR_END:
            i = bisect.bisect_right(self._buffers, a) - 1
            return self._buffer_owner[i].guest_address(a) if i >= 0 else None
        slots = self.engine.slots
        slot = slots.slot_of(a)
        owner = slots.owner.get(slot) if slot is not None else None
        if owner is not None and owner.ainsn is not None:
            return owner.addr if a == slot else owner.addr + owner.ainsn.length
        return None

"""Narration for `explain on`: what the engine did, as events, and their rendering.

The engine reports each step of a probe's life (prepared, armed, hit, stepped, fixed up,
returned through the trampoline ...) as an event: what happened, with the addresses,
bytes, probe, task and counts involved.  It builds one only when somebody listens
(KprobeEngine.narrator is set: the caller checks that first, so a probe hit pays
nothing otherwise), and render() turns it into the sentence `explain` prints.  The
wording lives here, and only here.

A probe in an event is the user's probe (Kprobe, Jprobe or Kretprobe), named by its
number in the shell (or its repr outside it); tasks are given by their label, read from
the guest when the event was made.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..machine.image import SymbolTable
    from .x86 import Fixup


def _name(probe) -> str:
    return probe.number or repr(probe)


# ---------------------------------------------------------------------- registration
@dataclass(frozen=True)
class Prepared:
    """arch_prepare_kprobe copied the probed instruction into its insn slot."""

    addr: int
    text: str       # the instruction, disassembled
    raw: bytes
    slot_index: int
    slot: int
    length: int


@dataclass(frozen=True)
class RipRelativeRetargeted:
    """The copy's RIP-relative displacement was rewritten to reach the same address."""

    addr: int
    slot: int
    length: int
    offset: int     # of the displacement in the instruction
    old_disp: int
    new_disp: int


@dataclass(frozen=True)
class AggregateFormed:
    """A second probe on an address: an aggregate kprobe stands in the table for all."""

    addr: int
    bucket: int     # of kprobe_table
    children: int
    slot: int
    boosted: bool


@dataclass(frozen=True)
class Armed:
    addr: int
    opcode: int     # the original byte under the int3


@dataclass(frozen=True)
class Disarmed:
    addr: int
    opcode: int


@dataclass(frozen=True)
class Optimized:
    """The int3 and the bytes after it were replaced by a jump to the detour."""

    addr: int
    insns: int
    length: int
    entry: int      # the detour entry the jump goes to


@dataclass(frozen=True)
class Unoptimized:
    addr: int


# ---------------------------------------------------------------------- the int3
@dataclass(frozen=True)
class ProbeHit:
    """kprobe_handler found the probe at the int3 and takes it (KPROBE_HIT_ACTIVE)."""

    addr: int
    bucket: int
    probe: Any                  # the user's probe; None for an aggregate
    aggregate_of: int | None    # an aggregate's active children
    pre_handler: bool


@dataclass(frozen=True)
class TrampolineHit:
    """The int3 is kretprobe_trampoline's: the engine's own probe takes it."""

    addr: int


@dataclass(frozen=True)
class ReentrantHit:
    """An int3 while another probe's handler runs: stepped, no handler (KPROBE_REENTER)."""

    addr: int
    running: Any    # the probe whose handler is active
    probe: Any      # the probe hit
    nmissed: int


@dataclass(frozen=True)
class LockSpin:
    """The 2005 kprobe_lock is held by another CPU: this one spins."""

    cpu: int
    addr: int


@dataclass(frozen=True)
class AggregateHandler:
    """An aggregate calls one child's handler ("pre_handler" or "post_handler")."""

    which: str
    probe: Any


@dataclass(frozen=True)
class FlowChanged:
    """A pre_handler returned 1: it moved rip itself, no single-step."""

    rip: int


# ---------------------------------------------------------------------- the step
@dataclass(frozen=True)
class Boosted:
    """The copy runs in the slot and jumps back by itself: no debug trap."""

    addr: int
    slot: int
    text: str
    length: int


@dataclass(frozen=True)
class SingleStepOutOfLine:
    addr: int
    slot: int
    text: str
    eflags_before: int
    eflags_after: int


@dataclass(frozen=True)
class SingleStepInPlace:
    addr: int
    text: str


@dataclass(frozen=True)
class DebugTrap:
    """The debug trap after the step."""

    rip: int
    rsp: int


@dataclass(frozen=True)
class PostHandlerRuns:
    """The post_handler runs before resume_execution (KPROBE_HIT_SSDONE)."""


@dataclass(frozen=True)
class FlagsWordFixed:
    """resume_execution put TF and IF back in the flags pushf pushed at rsp."""

    rsp: int
    before: int
    after: int


@dataclass(frozen=True)
class ReturnAddressFixed:
    """resume_execution moved the return address a call pushed from the slot back to the
    probed code."""

    rsp: int
    before: int
    after: int
    indirect: bool


@dataclass(frozen=True)
class RipFixed:
    """resume_execution's last step: rip moved from the slot back to the probed code, or
    left alone because the instruction set it absolutely."""

    fixup: "Fixup"
    copy_rip: int   # where the copy ran: the slot (or the probed address, stepped in place)
    orig_rip: int   # the probed address
    rip: int        # rip after the fix-up
    moved: bool


# ---------------------------------------------------------------------- optimized probes
@dataclass(frozen=True)
class OptimizedHit:
    addr: int
    entry: int      # the detour entry where the handlers ran
    buffer: int     # where the relocated copies run


@dataclass(frozen=True)
class OptimizedMissed:
    addr: int


# ---------------------------------------------------------------------- jprobes
@dataclass(frozen=True)
class JprobeSetjmp:
    """setjmp_pre_handler saved the registers and the top of the stack."""

    regs: dict      # jprobe_saved_regs
    rsp: int
    stack_bytes: int
    return_address: int     # the first word of the saved stack
    entry: int      # the jprobe's handler


@dataclass(frozen=True)
class JprobeLongjmp:
    """longjmp_break_handler took jprobe_return's int3 and restored the saved state."""

    addr: int
    rsp: int
    regs: int       # how many registers were restored
    stack_bytes: int
    rip: int


# ---------------------------------------------------------------------- kretprobes
@dataclass(frozen=True)
class KretprobeMissed:
    """pre_handler_kretprobe found no free instance."""

    probe: Any
    maxactive: int
    nmissed: int


@dataclass(frozen=True)
class KretprobeEntry:
    """arch_prepare_kretprobe took an instance and planted the trampoline's address."""

    probe: Any
    index: int      # of the instance
    used: int
    free: int
    task: str       # the task's label (its address when it is not a task)
    rsp: int
    ret_addr: int
    ret_is_trampoline: bool     # another return probe got there first
    tramp: int
    booster: bool   # tramp is the booster's ret, not kretprobe_trampoline
    mode: str       # the kprobe mode (for the booster)
    bucket: int     # of kretprobe_inst_table


@dataclass(frozen=True)
class TrampolineWalk:
    """trampoline_probe_handler starts walking the task's bucket."""

    bucket: int
    instances: int  # in the bucket, of every task
    task: int
    task_label: str


@dataclass(frozen=True)
class InstanceWalked:
    """One instance of the walk; probe None when its probe was unregistered."""

    index: int
    probe: Any
    ret_addr: int
    ret_is_trampoline: bool
    rax: int | None     # when the probe has a handler to call


@dataclass(frozen=True)
class TrampolineReturned:
    consumed: int
    ret_addr: int


@dataclass(frozen=True)
class BoosterReturned:
    ret_addr: int


@dataclass(frozen=True)
class InstancesFlushed:
    """kprobe_flush_task recycled a task's instances without calling their handlers."""

    task: int
    task_label: str
    caller: int     # the return address at the flush's entry: who flushed
    bucket: int
    instances: tuple    # (index, probe or None, ret_addr) of each, oldest last


@dataclass(frozen=True)
class StackFrameResolved:
    """A recorded stack's frame held the trampoline; the task's instance gave the real
    return address (ftrace's stacktrace, tracing/stacks.py)."""

    depth: int
    ret_addr: int


# ---------------------------------------------------------------------- rendering
def render(event, symbols: "SymbolTable") -> str:
    """The sentence `explain` prints for event."""
    return _RENDERERS[type(event)](event, symbols)


def _prepared(e: Prepared, syms) -> str:
    return (f"arch_prepare_kprobe: copied '{e.text}' ({e.raw.hex(' ')}) from {syms.format(e.addr)} into insn slot "
            f"{e.slot_index} at 0x{e.slot:x}, followed by jmp 0x{e.addr + e.length:x} (the way back when boosted)")


def _rip_relative_retargeted(e: RipRelativeRetargeted, syms) -> str:
    # new_disp = (addr + old_disp) - slot: both displacements count from the end of the instruction.
    old, new = e.old_disp, e.new_disp
    return (f"RIP-relative operand: displacement 0x{old & 0xffffffff:08x} ({old:+#x}) at byte {e.offset} reaches "
            f"0x{e.addr + e.length + old:x} from 0x{e.addr + e.length:x}; in the slot it becomes "
            f"0x{new & 0xffffffff:08x} ({new:+#x}), which reaches the same address from 0x{e.slot + e.length:x}")


def _aggregate_formed(e: AggregateFormed, syms) -> str:
    return (f"second probe at {syms.format(e.addr)}: an aggregate kprobe now stands in "
            f"kprobe_table[{e.bucket}] and calls its {e.children} probes in turn; they share the first "
            f"probe's slot 0x{e.slot:x} ({'boosted' if e.boosted else 'single-stepped'}: "
            "boosted only when no child needs the debug trap)")


def _armed(e: Armed, syms) -> str:
    return f"armed: int3 (cc) planted at {syms.format(e.addr)} (0x{e.addr:x}) over the original byte {e.opcode:02x}"


def _disarmed(e: Disarmed, syms) -> str:
    return f"disarmed: original byte {e.opcode:02x} written back over the int3 at {syms.format(e.addr)} (0x{e.addr:x})"


def _optimized(e: Optimized, syms) -> str:
    return (f"optimized the probe at {syms.format(e.addr)}: {e.insns} instruction(s), {e.length} bytes, "
            f"replaced by jmp 0x{e.entry:x}")


def _unoptimized(e: Unoptimized, syms) -> str:
    return f"unoptimized the probe at {syms.format(e.addr)}"


def _probe_hit(e: ProbeHit, syms) -> str:
    what = (f"an aggregate of {e.aggregate_of} probes" if e.probe is None else
            f"{type(e.probe).__name__.lower()} {_name(e.probe)}")
    return (f"int3 trap, rip 0x{e.addr + 1:x}: probe at {syms.format(e.addr)} (0x{e.addr:x}) found in "
            f"kprobe_table[{e.bucket}]: {what}"
            + ("; running its pre_handler (KPROBE_HIT_ACTIVE)" if e.pre_handler else "; no pre_handler"))


def _trampoline_hit(e: TrampolineHit, syms) -> str:
    return (f"int3 trap, rip 0x{e.addr + 1:x}: the breakpoint at 0x{e.addr:x} is kretprobe_trampoline; the "
            "engine's probe there runs trampoline_probe_handler")


def _reentrant_hit(e: ReentrantHit, syms) -> str:
    return (f"int3 at {syms.format(e.addr)} while probe {_name(e.running)} is running (a handler is active): "
            f"no handlers run, nmissed of probe {_name(e.probe)} is now {e.nmissed}; "
            "the instruction is just stepped (KPROBE_REENTER)")


def _lock_spin(e: LockSpin, syms) -> str:
    return (f"cpu {e.cpu}: int3 at {syms.format(e.addr)} while another CPU holds kprobe_lock: spinning "
            "(2005 serialisation)")


def _aggregate_handler(e: AggregateHandler, syms) -> str:
    if e.which == "pre_handler":
        return f"aggregate: pre_handler of probe {_name(e.probe)} ({type(e.probe).__name__.lower()})"
    return f"aggregate: {e.which} of probe {_name(e.probe)}"


def _flow_changed(e: FlowChanged, syms) -> str:
    return (f"pre_handler returned 1: it changed the flow, rip is now {syms.format(e.rip)} (0x{e.rip:x}); "
            "no single-step")


def _boosted(e: Boosted, syms) -> str:
    back = e.addr + e.length
    return (f"boosted: rip = slot 0x{e.slot:x}; the copy '{e.text}' runs, then the jmp at "
            f"0x{e.slot + e.length:x} goes straight back to {syms.format(back)} (0x{back:x}): "
            "no debug trap, no post_handler")


def _single_step_out_of_line(e: SingleStepOutOfLine, syms) -> str:
    return (f"single-step out of line: rip 0x{e.addr + 1:x} -> slot 0x{e.slot:x} holding '{e.text}'; "
            f"eflags 0x{e.eflags_before:x} -> 0x{e.eflags_after:x} (TF set, IF cleared) (KPROBE_HIT_SS)")


def _single_step_in_place(e: SingleStepInPlace, syms) -> str:
    return (f"single-stepping '{e.text}' in place at 0x{e.addr:x}: original byte restored, "
            "other CPUs run past the probe until the int3 is back")


def _debug_trap(e: DebugTrap, syms) -> str:
    return f"debug trap: the copy ran (one instruction), rip 0x{e.rip:x}, rsp 0x{e.rsp:x}"


def _post_handler_runs(e: PostHandlerRuns, syms) -> str:
    return "running the post_handler (KPROBE_HIT_SSDONE) before resume_execution's fix-up"


def _flags_word_fixed(e: FlagsWordFixed, syms) -> str:
    return (f"pushf pushed the stepping flags: the word at 0x{e.rsp:x} goes from 0x{e.before:x} to "
            f"0x{e.after:x} (TF/IF as before the trap)")


def _return_address_fixed(e: ReturnAddressFixed, syms) -> str:
    call = "the indirect call" if e.indirect else "the call"
    return (f"{call} pushed a return address inside the slot: stack slot 0x{e.rsp:x} goes from "
            f"0x{e.before:x} to 0x{e.after:x} ({syms.format(e.after)})")


def _rip_fixed(e: RipFixed, syms) -> str:
    if not e.moved:
        return (f"resume_execution, fix-up '{e.fixup}': rip 0x{e.rip:x} ({syms.format(e.rip)}) "
                "is already absolute: left alone")
    in_copy = e.copy_rip + e.rip - e.orig_rip
    return (f"resume_execution, fix-up '{e.fixup}': rip 0x{in_copy:x} (relative to the slot) -> "
            f"0x{e.rip:x} ({syms.format(e.rip)}) = 0x{e.orig_rip:x} + (0x{in_copy:x} - slot 0x{e.copy_rip:x})")


def _optimized_hit(e: OptimizedHit, syms) -> str:
    return (f"optimized probe at {syms.format(e.addr)}: handlers ran at the detour entry 0x{e.entry:x}; "
            f"the relocated copies run from 0x{e.buffer:x}")


def _optimized_missed(e: OptimizedMissed, syms) -> str:
    return f"optimized probe at 0x{e.addr:x} hit inside a handler: nmissed, no handlers run"


def _jprobe_setjmp(e: JprobeSetjmp, syms) -> str:
    r, rsp = e.regs, e.rsp
    return (f"setjmp_pre_handler: saved {len(r)} registers (rip 0x{r['rip']:x}, rsp 0x{rsp:x}, rbp 0x{r['rbp']:x}, "
            f"rdi 0x{r['rdi']:x}, rsi 0x{r['rsi']:x}, rdx 0x{r['rdx']:x}, rcx 0x{r['rcx']:x}) in jprobe_saved_regs "
            f"and copied {e.stack_bytes} stack bytes 0x{rsp:x}-0x{rsp + e.stack_bytes:x} "
            f"(return address 0x{e.return_address:x} first) to jprobes_stack; "
            f"jprobe_saved_rsp = 0x{rsp:x}; IF cleared, rip -> {syms.format(e.entry)}: the "
            "handler runs in the guest with the probed call's arguments untouched")


def _jprobe_longjmp(e: JprobeLongjmp, syms) -> str:
    return (f"jprobe_return's int3 at {syms.format(e.addr)}: no probe there, so the running jprobe's break_handler "
            f"(longjmp_break_handler) takes it: rsp 0x{e.rsp:x} matches the saved rsp; {e.regs} registers and "
            f"the {e.stack_bytes} stack bytes at 0x{e.rsp:x} restored (rip 0x{e.rip:x}); now the probed "
            "instruction is stepped as for any kprobe")


def _kretprobe_missed(e: KretprobeMissed, syms) -> str:
    return (f"pre_handler_kretprobe of probe {_name(e.probe)}: no free instance (all {e.maxactive} of "
            f"maxactive in flight), so this call is not traced: nmissed = {e.nmissed}")


def _kretprobe_entry(e: KretprobeEntry, syms) -> str:
    ret = ("kretprobe_trampoline: another return probe got there first" if e.ret_is_trampoline
           else syms.format(e.ret_addr))
    tramp = (f"the kretprobe booster's ret 0x{e.tramp:x} (the tool's stub page: kprobe-mode {e.mode})"
             if e.booster else f"kretprobe_trampoline 0x{e.tramp:x}")
    return (f"arch_prepare_kretprobe: probe {_name(e.probe)} takes instance #{e.index} ({e.used} used, "
            f"{e.free} free) for {e.task}; the return address at stack slot 0x{e.rsp:x}, 0x{e.ret_addr:x} "
            f"({ret}), is saved in the instance and replaced by {tramp}; instance at the head of "
            f"kretprobe_inst_table[{e.bucket}]")


def _trampoline_walk(e: TrampolineWalk, syms) -> str:
    return (f"trampoline_probe_handler: walking kretprobe_inst_table[{e.bucket}] ({e.instances} instance(s)) "
            f"for the instances of {e.task_label} (task_struct 0x{e.task:x}), newest first")


def _instance_walked(e: InstanceWalked, syms) -> str:
    if e.probe is None:
        return f"  an instance of an unregistered probe: ret_addr 0x{e.ret_addr:x}, no handler"
    ret = "(kretprobe_trampoline: keep walking)" if e.ret_is_trampoline else f"({syms.format(e.ret_addr)})"
    return (f"  instance #{e.index} of probe {_name(e.probe)} ({syms.containing(e.probe.addr)[0].name}): "
            f"ret_addr 0x{e.ret_addr:x} {ret}"
            + (f"; calling its handler, rax = 0x{e.rax:x}" if e.rax is not None else ""))


def _trampoline_returned(e: TrampolineReturned, syms) -> str:
    return (f"trampoline: {e.consumed} instance(s) consumed and recycled; rip = 0x{e.ret_addr:x} "
            f"({syms.format(e.ret_addr)}), the real return address; no single-step")


def _booster_returned(e: BoosterReturned, syms) -> str:
    return f"kretprobe booster: returning to {syms.format(e.ret_addr)}"


def _instances_flushed(e: InstancesFlushed, syms) -> str:
    each = "; ".join(f"instance #{index} of probe {probe.number if probe is not None else '-'}, ret_addr 0x{ret:x}"
                     for index, probe, ret in e.instances)
    return (f"kprobe_flush_task({e.task_label}, task_struct 0x{e.task:x}) called from {syms.format(e.caller)}: the "
            f"task's {len(e.instances)} instance(s) in kretprobe_inst_table[{e.bucket}] are recycled without "
            f"calling their handlers (those functions are not expected to return): {each}")


def _stack_frame_resolved(e: StackFrameResolved, syms) -> str:
    return (f"stacktrace: frame #{e.depth} held kretprobe_trampoline: the task's kretprobe instance gives "
            f"the real return address {syms.format(e.ret_addr)}")


_RENDERERS = {
    Prepared: _prepared,
    RipRelativeRetargeted: _rip_relative_retargeted,
    AggregateFormed: _aggregate_formed,
    Armed: _armed,
    Disarmed: _disarmed,
    Optimized: _optimized,
    Unoptimized: _unoptimized,
    ProbeHit: _probe_hit,
    TrampolineHit: _trampoline_hit,
    ReentrantHit: _reentrant_hit,
    LockSpin: _lock_spin,
    AggregateHandler: _aggregate_handler,
    FlowChanged: _flow_changed,
    Boosted: _boosted,
    SingleStepOutOfLine: _single_step_out_of_line,
    SingleStepInPlace: _single_step_in_place,
    DebugTrap: _debug_trap,
    PostHandlerRuns: _post_handler_runs,
    FlagsWordFixed: _flags_word_fixed,
    ReturnAddressFixed: _return_address_fixed,
    RipFixed: _rip_fixed,
    OptimizedHit: _optimized_hit,
    OptimizedMissed: _optimized_missed,
    JprobeSetjmp: _jprobe_setjmp,
    JprobeLongjmp: _jprobe_longjmp,
    KretprobeMissed: _kretprobe_missed,
    KretprobeEntry: _kretprobe_entry,
    TrampolineWalk: _trampoline_walk,
    InstanceWalked: _instance_walked,
    TrampolineReturned: _trampoline_returned,
    BoosterReturned: _booster_returned,
    InstancesFlushed: _instances_flushed,
    StackFrameResolved: _stack_frame_resolved,
}

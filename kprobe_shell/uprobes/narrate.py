"""What `explain on` says about uprobes: one event dataclass per step, one renderer
(the pattern of kprobes/narrate.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BreakpointInstalled:
    program: str
    where: str
    vaddr: int
    pid: int
    why: str


@dataclass(frozen=True)
class XolAreaAdded:
    pid: int
    vaddr: int
    page: int


@dataclass(frozen=True)
class UprobeHit:
    comm: str
    pid: int
    where: str
    vaddr: int
    consumers: int


@dataclass(frozen=True)
class SteppedOutOfLine:
    vaddr: int
    slot: int
    insn: str
    scratch: str | None


@dataclass(frozen=True)
class StepFinished:
    fixup: str
    slot_rip: int
    rip: int


@dataclass(frozen=True)
class ReturnHijacked:
    where: str
    slot: int
    orig: int
    chained: bool
    depth: int


@dataclass(frozen=True)
class UretprobeOmitted:
    where: str
    depth: int


@dataclass(frozen=True)
class TrampolineReturn:
    comm: str
    pid: int
    returns_to: int
    handled: int
    dropped: int


@dataclass(frozen=True)
class UtaskFreed:
    pid: int
    pending: int


def render(event) -> str:
    return _RENDERERS[type(event)](event)


def _installed(e: BreakpointInstalled) -> str:
    return (f"uprobe: install_breakpoint: int3 written at 0x{e.vaddr:x} ({e.where}) in pid {e.pid}'s own copy "
            f"of {e.program}'s text ({e.why}); the file on the guest's disk is unchanged")


def _xol(e: XolAreaAdded) -> str:
    return (f"uprobe: xol_add_vma: pid {e.pid} gets its [uprobes] page at 0x{e.vaddr:x} (page 0x{e.page:x}): "
            f"slot 0 is the uretprobe trampoline (int3), the others are for out-of-line steps")


def _hit(e: UprobeHit) -> str:
    return (f"uprobe: int3 at 0x{e.vaddr:x} ({e.where}) in user mode, {e.comm}-{e.pid}: handle_swbp finds the "
            f"uprobe, rip back to 0x{e.vaddr:x}, handler_chain runs {e.consumers} consumer(s)")


def _stepped(e: SteppedOutOfLine) -> str:
    via = (f"; its RIP-relative operand now goes through %{e.scratch} = the original next rip "
           f"(riprel_pre_xol)") if e.scratch else ""
    return (f"uprobe: pre_ssout: '{e.insn}' copied into XOL slot 0x{e.slot:x}, TF set, rip = the slot{via}")


def _finished(e: StepFinished) -> str:
    return (f"uprobe: debug trap after the step (rip 0x{e.slot_rip:x}): arch_uprobe_post_xol applies "
            f"'{e.fixup}', rip = 0x{e.rip:x}, TF back as the program had it, slot freed")


def _hijacked(e: ReturnHijacked) -> str:
    chain = " (it held the trampoline already: a chained instance, the first caller's address kept)" if e.chained else ""
    return (f"uretprobe: prepare_uretprobe: the return address at 0x{e.slot:x} (0x{e.orig:x}) swapped for the "
            f"trampoline; return instance #{e.depth} of the task{chain}")


def _omitted(e: UretprobeOmitted) -> str:
    return f"uretprobe: {e.where}: the task has {e.depth} instance(s): return not hijacked (nmissed)"


def _trampoline(e: TrampolineReturn) -> str:
    dropped = (f"; {e.dropped} instance(s) left by a longjmp dropped without their handlers" if e.dropped else "")
    return (f"uretprobe: int3 at the trampoline, {e.comm}-{e.pid}: handle_trampoline runs {e.handled} return "
            f"handler chain(s), rip = 0x{e.returns_to:x}{dropped}")


def _freed(e: UtaskFreed) -> str:
    return (f"uprobe: uprobe_free_utask: pid {e.pid} execs or exits with {e.pending} return instance(s) "
            f"pending: freed, their handlers not called")


_RENDERERS = {
    BreakpointInstalled: _installed, XolAreaAdded: _xol, UprobeHit: _hit, SteppedOutOfLine: _stepped,
    StepFinished: _finished, ReturnHijacked: _hijacked, UretprobeOmitted: _omitted,
    TrampolineReturn: _trampoline, UtaskFreed: _freed,
}

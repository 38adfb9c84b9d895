"""Narration for `explain on`: what the engine did, as events, and their rendering.

The engine reports a step of a probe hit as an event (what happened, with the addresses
and bytes involved) only when somebody listens (KprobeEngine.narrator is set), and
render() turns it into the sentence `explain` prints.  The wording lives here, not in
the engine's paths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine.symbols import SymbolTable
    from .x86 import Fixup


@dataclass(frozen=True)
class StackWordFixed:
    """resume_execution rewrote the word at rsp (pushf's flags, a call's return address)."""

    fixup: "Fixup"
    rsp: int
    before: int
    after: int


@dataclass(frozen=True)
class RipFixed:
    """resume_execution's last step: rip moved from the slot back to the probed code, or
    left alone because the instruction set it absolutely."""

    fixup: "Fixup"
    copy_rip: int   # where the copy ran: the slot (or the probed address, stepped in place)
    orig_rip: int   # the probed address
    rip: int        # rip after the fix-up
    moved: bool


@dataclass(frozen=True)
class Armed:
    addr: int
    opcode: int     # the original byte under the int3


@dataclass(frozen=True)
class Disarmed:
    addr: int
    opcode: int


def render(event, symbols: "SymbolTable") -> str:
    """The sentence `explain` prints for event."""
    return _RENDERERS[type(event)](event, symbols.format)


def _stack_word_fixed(e: StackWordFixed, fmt) -> str:
    from .x86 import Fixup

    if e.fixup is Fixup.PUSHF:
        return (f"pushf pushed the stepping flags: the word at 0x{e.rsp:x} goes from 0x{e.before:x} to "
                f"0x{e.after:x} (TF/IF as before the trap)")
    call = "the indirect call" if e.fixup is Fixup.INDIRECT_CALL else "the call"
    return (f"{call} pushed a return address inside the slot: stack slot 0x{e.rsp:x} goes from "
            f"0x{e.before:x} to 0x{e.after:x} ({fmt(e.after)})")


def _rip_fixed(e: RipFixed, fmt) -> str:
    if not e.moved:
        return (f"resume_execution, fix-up '{e.fixup}': rip 0x{e.rip:x} ({fmt(e.rip)}) "
                "is already absolute: left alone")
    in_copy = e.copy_rip + e.rip - e.orig_rip
    return (f"resume_execution, fix-up '{e.fixup}': rip 0x{in_copy:x} (relative to the slot) -> "
            f"0x{e.rip:x} ({fmt(e.rip)}) = 0x{e.orig_rip:x} + (0x{in_copy:x} - slot 0x{e.copy_rip:x})")


def _armed(e: Armed, fmt) -> str:
    return f"armed: int3 (cc) planted at {fmt(e.addr)} (0x{e.addr:x}) over the original byte {e.opcode:02x}"


def _disarmed(e: Disarmed, fmt) -> str:
    return f"disarmed: original byte {e.opcode:02x} written back over the int3 at {fmt(e.addr)} (0x{e.addr:x})"


_RENDERERS = {
    StackWordFixed: _stack_word_fixed,
    RipFixed: _rip_fixed,
    Armed: _armed,
    Disarmed: _disarmed,
}

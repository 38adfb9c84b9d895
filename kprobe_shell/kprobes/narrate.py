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
    from ..machine.image import SymbolTable
    from .x86 import Fixup


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


def _flags_word_fixed(e: FlagsWordFixed, fmt) -> str:
    return (f"pushf pushed the stepping flags: the word at 0x{e.rsp:x} goes from 0x{e.before:x} to "
            f"0x{e.after:x} (TF/IF as before the trap)")


def _return_address_fixed(e: ReturnAddressFixed, fmt) -> str:
    call = "the indirect call" if e.indirect else "the call"
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
    FlagsWordFixed: _flags_word_fixed,
    ReturnAddressFixed: _return_address_fixed,
    RipFixed: _rip_fixed,
    Armed: _armed,
    Disarmed: _disarmed,
}

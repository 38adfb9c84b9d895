"""The x86_64 half of kprobes: instruction slots, the out-of-line copy and its fix-ups.

Mirrors arch/x86_64/kernel/kprobes.c (2.6.12/2.6.13): arch_prepare_kprobe copies the
probed instruction into an insn slot (fixing a RIP-relative displacement so it still
reaches its target from the slot), prepare_singlestep sends the CPU there with TF set,
and resume_execution fixes rip and the stack after the debug trap.

The engine's trap paths (core.py) call the functions at the end of this module:
want_boost and arch_prepare_kprobe at registration; prepare_singlestep (out of line, or
prepare_singlestep_in_place) at the int3; resume_execution and rep_string_exit_pass at
the debug trap.  classify() and its opcode table decide the fix-up, boostability and
relocation for each instruction.

Two places where the 2005 code was wrong are done right here: the `ff` group is
decoded from the ModRM reg field (the 2005 code tested the opcode byte, so indirect
calls did not get their return address fixed), and `iret` is in the "rip is already
absolute" list (the 2005 code had no case for it).
"""
from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone import x86_const as CX

from ..machine.layout import EFLAGS_IF, EFLAGS_TF, INSN_SLOT_BASE, INSN_SLOT_END, PAGE_SIZE
from .narrate import (
    FlagsWordFixed,
    Prepared,
    ReturnAddressFixed,
    RipFixed,
    RipRelativeRetargeted,
    SingleStepInPlace,
    SingleStepOutOfLine,
)
from .types import AggrKprobe, Kprobe, ProbeError, ProbeMode

if TYPE_CHECKING:
    from ..machine import Machine
    from .core import KprobeEngine

MAX_INSN_SIZE = 15
#: A slot holds the copy (<= 15 bytes) and, for a boosted probe, a 5-byte jmp back.
INSN_SLOT_SIZE = 32
BREAKPOINT_INSTRUCTION = 0xCC

#: String instructions a rep prefix repeats: ins, outs, movs, cmps, stos, lods, scas.
REP_STRING_OPCODES = frozenset({0x6C, 0x6D, 0x6E, 0x6F, 0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF})

LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})

_cs = Cs(CS_ARCH_X86, CS_MODE_64)
_cs.detail = True


def decode(code: bytes, addr: int):
    """The first instruction of code (a capstone instruction) or None."""
    for insn in _cs.disasm(code, addr, 1):
        return insn
    return None


def skip_prefixes(insn_bytes: bytes) -> int:
    """Index of the opcode: past legacy prefixes and a REX prefix (0x40-0x4f)."""
    i = 0
    while i < len(insn_bytes) and insn_bytes[i] in LEGACY_PREFIXES:
        i += 1
    if i < len(insn_bytes) and 0x40 <= insn_bytes[i] <= 0x4F:
        i += 1
    return i


@dataclass
class DecodedInsn:
    """What arch_prepare_kprobe learns about the probed instruction."""

    address: int
    raw: bytes
    mnemonic: str
    op_str: str
    opcode_index: int          # where the opcode byte is, past prefixes
    rip_disp_offset: int | None  # offset of a RIP-relative disp32 in raw, if any

    @property
    def length(self) -> int:
        return len(self.raw)

    @property
    def opcode(self) -> int:
        return self.raw[self.opcode_index]

    @property
    def modrm_reg(self) -> int | None:
        if self.opcode_index + 1 < len(self.raw):
            return (self.raw[self.opcode_index + 1] >> 3) & 7
        return None

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    def is_if_modifier(self) -> bool:
        """cli, sti, popf, iret change IF: the step must not put the saved IF back."""
        return self.opcode in IF_MODIFIERS

    def is_rep_string(self) -> bool:
        """A rep/repe/repne-prefixed string instruction (movs, stos, lods, cmps, scas, ins,
        outs): the CPU single-steps it one iteration at a time."""
        return self.opcode in REP_STRING_OPCODES and any(
            b in (0xF2, 0xF3) for b in self.raw[: self.opcode_index]
        )

    @functools.cached_property
    def classified(self) -> "InsnClass":
        return classify(self)

    def fixup_kind(self) -> "Fixup":
        """Which resume_execution rule applies (see classify)."""
        return self.classified.fixup

    def boostable(self) -> bool:
        """May run from the slot followed by `jmp addr+len`, with no debug trap (see classify)."""
        return self.classified.boostable


class Fixup(enum.StrEnum):
    """resume_execution's rules: how rip and the stack are fixed after the copy ran in the
    slot (a str: it prints as the rule's name)."""

    RIP_RELATIVE = "rip relative to slot"          # rip = addr + (rip - slot)
    PUSHF = "pushf"                                # and TF/IF in the pushed word as before the trap
    RIP_ABSOLUTE = "ret/iret: rip absolute"        # rip left alone
    INDIRECT_JMP = "indirect jmp: rip absolute"    # rip left alone
    FAR_JMP = "far jmp: rip absolute"              # rip left alone
    CALL_REL32 = "call rel32"                      # the pushed return address moved back, and rip
    INDIRECT_CALL = "indirect call"                # the pushed return address moved back, rip left alone

    @property
    def rip_absolute(self) -> bool:
        return self in (Fixup.RIP_ABSOLUTE, Fixup.INDIRECT_JMP, Fixup.FAR_JMP, Fixup.INDIRECT_CALL)


#: Why an instruction that needs no fix-up still cannot run from a slot without the debug
#: trap (boosted) or from a detour buffer (optimized): its effect depends on where it runs.
_JUMPS = "a relative jump (its target depends on where it runs)"
_CHANGES_IF = "it changes or pushes the interrupt flag"
_TRAPS = "it traps, halts or enters the kernel"
_REP_STRING = "a rep string instruction (its iterations are counted one by one)"

#: cli, sti, popf, iret: the instructions that change IF.
IF_MODIFIERS = frozenset({0xFA, 0xFB, 0x9D, 0xCF})

#: The one opcode table (one-byte opcodes): what resume_execution does, and why the
#: instruction cannot be boosted or relocated (None: it can).  Opcodes not listed are
#: rip-relative-to-slot and boostable; 0x0f and 0xff are decoded further in classify().
OPCODES: dict[int, tuple[Fixup, str | None]] = {
    0x9C: (Fixup.PUSHF, _CHANGES_IF),
    **{op: (Fixup.RIP_ABSOLUTE, _JUMPS) for op in (0xC3, 0xCB, 0xC2, 0xCA, 0xCF)},
    0xE8: (Fixup.CALL_REL32, _JUMPS),
    0xEA: (Fixup.FAR_JMP, _JUMPS),
    **{op: (Fixup.RIP_RELATIVE, _JUMPS) for op in (*range(0x70, 0x80), 0xE9, 0xEB, 0xE0, 0xE1, 0xE2, 0xE3)},
    **{op: (Fixup.RIP_RELATIVE, _CHANGES_IF) for op in IF_MODIFIERS if op != 0xCF},  # iret: above
    **{op: (Fixup.RIP_RELATIVE, _TRAPS) for op in (0xCC, 0xCD, 0xCE, 0xF4)},
}
#: 0xff by its ModRM reg field (the 2005 code tested the opcode byte instead); the other
#: forms (inc, dec, push of memory) are not boosted either.
_GROUP_FF = {2: Fixup.INDIRECT_CALL, 3: Fixup.INDIRECT_CALL, 4: Fixup.INDIRECT_JMP, 5: Fixup.INDIRECT_JMP}
#: Two-byte opcodes (after 0x0f) that trap or enter the kernel: syscall, sysret,
#: sysenter, sysexit, the 0f 01 system group, ud2.  0f 80-8f are the jcc rel32.
_TRAPPING_0F = frozenset({0x05, 0x07, 0x34, 0x35, 0x01, 0x0B})


@dataclass(frozen=True)
class InsnClass:
    """What classify() says about an instruction."""

    fixup: Fixup
    boostable: bool
    #: Why it cannot run from a detour buffer (None: it can); the optimizer shows it.
    relocation_refusal: str | None


def classify(insn: DecodedInsn) -> InsnClass:
    """The fix-up resume_execution applies, whether the copy may run boosted (the kernel's
    can_boost()), and why it cannot run relocated (can_optimize_insns).

    A boosted or relocated copy runs with no debug trap after it, so anything whose effect
    depends on where it runs (relative jumps and calls, returns), that changes flow or IF,
    pushes the flags (the pushed TF/IF), or traps is refused; RIP-relative operands are
    fine (the displacement is fixed when the copy is made).  A rep string instruction is
    refused too: it would run all its iterations in the slot, where the clock does not
    count them one by one."""
    op = insn.opcode
    fixup, why = OPCODES.get(op, (Fixup.RIP_RELATIVE, None))
    if op == 0xFF:
        fixup, why = _GROUP_FF.get(insn.modrm_reg, Fixup.RIP_RELATIVE), _JUMPS
    elif op == 0x0F and insn.opcode_index + 1 < insn.length:
        op2 = insn.raw[insn.opcode_index + 1]
        if 0x80 <= op2 <= 0x8F:
            why = _JUMPS
        elif op2 in _TRAPPING_0F:
            why = _TRAPS
    if fixup is not Fixup.RIP_RELATIVE:
        why = f"it needs the '{fixup}' fix-up"
    elif insn.is_rep_string():
        why = _REP_STRING
    return InsnClass(fixup, why is None, why)


def decode_at(code: bytes, addr: int) -> DecodedInsn | None:
    insn = decode(code, addr)
    if insn is None:
        return None
    raw = bytes(insn.bytes)
    rip_disp = None
    for op in insn.operands:
        if op.type == CX.X86_OP_MEM and op.mem.base == CX.X86_REG_RIP:
            rip_disp = insn.disp_offset
    return DecodedInsn(addr, raw, insn.mnemonic, insn.op_str, skip_prefixes(raw), rip_disp)


def copy_for_slot(insn: DecodedInsn, slot: int) -> bytes:
    """The probed instruction as it must stand in the slot (arch_copy_kprobe).

    A RIP-relative operand is re-targeted: new_disp = (addr + old_disp) - slot, so the
    copy reaches the same memory from its new place.
    """
    raw = bytearray(insn.raw)
    if insn.rip_disp_offset is not None:
        off = insn.rip_disp_offset
        old = int.from_bytes(raw[off : off + 4], "little", signed=True)
        new = old + insn.address - slot
        if not -(1 << 31) <= new < (1 << 31):
            raise ProbeError(
                f"the RIP-relative operand of '{insn.text}' cannot reach its target from the "
                f"instruction slot at 0x{slot:x} (displacement {new:#x} does not fit 32 bits)"
            )
        raw[off : off + 4] = new.to_bytes(4, "little", signed=True)
    return bytes(raw)


def jmp_rel32(src: int, dst: int) -> bytes:
    rel = dst - (src + 5)
    if not -(1 << 31) <= rel < (1 << 31):
        raise ProbeError(f"0x{dst:x} is out of reach of a jmp from 0x{src:x}")
    return b"\xe9" + rel.to_bytes(4, "little", signed=True)


class InsnSlots:
    """Pages of instruction slots near the image (the kernel's get_insn_slot/free_insn_slot)."""

    def __init__(self, machine, base: int = INSN_SLOT_BASE, end: int = INSN_SLOT_END, size: int = INSN_SLOT_SIZE):
        self.machine = machine
        self.base, self.end, self.size = base, end, size
        self._free: list[int] = []
        self._next = base
        self.owner: dict[int, object] = {}

    def get(self, owner) -> int:
        if self._free:
            slot = min(self._free)  # lowest first: the same script gives the same addresses
            self._free.remove(slot)
        else:
            if self._next + self.size > self.end:
                raise ProbeError("out of instruction slots")
            slot = self._next
            if slot % PAGE_SIZE == 0:
                self.machine.map_tool_page(slot)
            self._next += self.size
        self.owner[slot] = owner
        return slot

    def free(self, slot: int) -> None:
        self.owner.pop(slot, None)
        self._free.append(slot)
        # Leave a trap behind so a stale jump into a freed slot is caught, not run.
        self.machine.write(slot, bytes([BREAKPOINT_INSTRUCTION]) * self.size)

    def contains(self, addr: int) -> bool:
        return self.base <= addr < self.end

    def slot_of(self, addr: int) -> int | None:
        if not self.contains(addr):
            return None
        return addr - (addr - self.base) % self.size


# ---------------------------------------------------------------------- the step, arch side
def want_boost(engine: "KprobeEngine", p: Kprobe) -> bool:
    if engine.mode is ProbeMode.SINGLE_STEP or p.ainsn is None or not p.ainsn.boostable():
        return False
    # A post_handler needs the debug trap after the step; a break_handler (jprobe) needs
    # the stepped path after longjmp.
    # A fault_handler needs the probe to be running while the copy executes
    # (kprobe_fault_handler only sees faults of a running probe), which a boosted copy
    # is not.
    if isinstance(p, AggrKprobe):
        return not any(c.post_handler or c.break_handler or c.fault_handler for c in p.children)
    return p.post_handler is None and p.break_handler is None and p.fault_handler is None


def arch_prepare_kprobe(engine: "KprobeEngine", p: Kprobe, insn: DecodedInsn) -> None:
    slot = engine.slots.get(p)
    try:
        copy = copy_for_slot(insn, slot)
    except ProbeError:
        engine.slots.free(slot)
        raise
    p.ainsn, p.opcode, p.slot = insn, insn.raw[0], slot
    p.boosted = want_boost(engine, p)
    # The jmp back is there for boosted runs; a single-step never reaches it (the debug
    # trap comes first), so one slot layout serves both modes.
    engine.machine.write(slot, copy + jmp_rel32(slot + len(copy), p.addr + insn.length))
    if engine.narrator is not None:
        _narrate_prepared(engine, p, insn, slot, copy)


def _narrate_prepared(engine: "KprobeEngine", p: Kprobe, insn: DecodedInsn, slot: int, copy: bytes) -> None:
    engine.narrate(Prepared(p.addr, insn.text, insn.raw, (slot - engine.slots.base) // engine.slots.size, slot,
                            insn.length))
    off = insn.rip_disp_offset
    if off is not None:
        old = int.from_bytes(insn.raw[off:off + 4], "little", signed=True)
        new = int.from_bytes(copy[off:off + 4], "little", signed=True)
        engine.narrate(RipRelativeRetargeted(p.addr, slot, insn.length, off, old, new))


def prepare_singlestep(engine: "KprobeEngine", p: Kprobe, machine: Machine) -> None:
    engine.kcb.ss_in_place = False
    eflags = machine.eflags
    engine.kprobe_saved_rflags = engine.kprobe_old_rflags = eflags & (EFLAGS_TF | EFLAGS_IF)
    if p.ainsn.is_if_modifier():
        engine.kprobe_saved_rflags &= ~EFLAGS_IF
    machine.set_reg("eflags", (eflags | EFLAGS_TF) & ~EFLAGS_IF)
    machine.set_reg("rip", p.slot)
    engine._rep_count_before = machine.reg("rcx") if p.ainsn.is_rep_string() else None
    if engine.narrator is not None:
        engine.narrate(SingleStepOutOfLine(p.addr, p.slot, p.ainsn.text, eflags, machine.eflags))


def prepare_singlestep_in_place(engine: "KprobeEngine", p: Kprobe, machine: Machine) -> None:
    """The naive single-step: put the original byte back, step the instruction at its own
    address, plant the int3 again in the debug trap (post_kprobe_handler).

    A step takes a trap in, the instruction, and a trap out: on hardware the other CPUs
    run meanwhile, and while the byte is back they run through the probe without
    trapping.  Modelled as: this CPU gives the rest of its quantum up at the int3, the
    other CPUs run their quanta with the original byte in place, and then this CPU steps
    and re-plants.  Each time another CPU starts the instruction in that window is a
    hit the probe never saw: a code hook on the address, on the other CPUs only and only
    while the window is open, counts them (missed_in_place)."""
    kcb = engine.kcb
    eflags = machine.eflags
    engine.kprobe_saved_rflags = engine.kprobe_old_rflags = eflags & (EFLAGS_TF | EFLAGS_IF)
    if p.ainsn.is_if_modifier():
        engine.kprobe_saved_rflags &= ~EFLAGS_IF
    kcb.ss_in_place = True
    machine.write(p.addr, bytes([p.opcode]))
    machine.set_reg("eflags", (eflags | EFLAGS_TF) & ~EFLAGS_IF)
    machine.set_reg("rip", p.addr)
    # The int3 was counted; the instruction is counted again when it runs at addr.
    machine.clock.adjust(-1)
    engine._rep_count_before = machine.reg("rcx") if p.ainsn.is_rep_string() else None
    others = [c.index for c in machine.cpus if c.index != machine.cpu_id]
    if others and p.addr not in engine._in_place_windows:
        engine._in_place_windows[p.addr] = machine.add_code_hook(
            p.addr, lambda m, entry=p: _missed_in_place(engine, entry), cpus=others)
    if engine.narrator is not None:
        engine.narrate(SingleStepInPlace(p.addr, p.ainsn.text))
    machine.smp.end_quantum()


def _missed_in_place(engine: "KprobeEngine", entry: Kprobe) -> None:
    for child in entry.children if isinstance(entry, AggrKprobe) else [entry]:
        child.owner.missed_in_place += 1


def resume_execution(engine: "KprobeEngine", p: Kprobe, machine: Machine) -> None:
    """Fix rip and the stack after the copy ran in the slot (the rules: x86.Fixup)."""
    kind = p.ainsn.fixup_kind()
    # Stepped in place, the "copy" is the original: every rule below is then the
    # identity, except pushf's (TF must not stay in the pushed flags).
    copy_rip, orig_rip = (p.addr if engine.kcb.ss_in_place else p.slot), p.addr
    if kind is Fixup.PUSHF:
        rsp = machine.reg("rsp")
        tos = machine.read_u64(rsp)
        _fix_stack_word(engine, kind, rsp, tos, (tos & ~(EFLAGS_TF | EFLAGS_IF)) | engine.kprobe_old_rflags)
    elif kind is Fixup.CALL_REL32 or kind is Fixup.INDIRECT_CALL:
        rsp = machine.reg("rsp")
        tos = machine.read_u64(rsp)
        _fix_stack_word(engine, kind, rsp, tos, orig_rip + (tos - copy_rip))
    moved = not kind.rip_absolute
    if moved:
        machine.set_reg("rip", orig_rip + (machine.rip - copy_rip))
    if engine.narrator is not None:
        engine.narrate(RipFixed(kind, copy_rip, orig_rip, machine.rip, moved))


def _fix_stack_word(engine: "KprobeEngine", kind: Fixup, rsp: int, before: int, after: int) -> None:
    engine.machine.write_u64(rsp, after)
    if engine.narrator is not None:
        engine.narrate(FlagsWordFixed(rsp, before, after) if kind is Fixup.PUSHF else
                       ReturnAddressFixed(rsp, before, after, indirect=kind is Fixup.INDIRECT_CALL))


def rep_string_exit_pass(engine: "KprobeEngine", p: Kprobe, machine: Machine) -> None:
    """Keep the clock exact across a stepped rep string instruction.

    Unstepped, the CPU's instruction counter sees each iteration as one instruction
    plus one more pass that finds the count exhausted and leaves; stepped (TF set),
    each iteration is one hit of the int3 and the last iteration leaves at once.  So
    when a step ends the instruction by exhausting rcx, send the guest back to the
    probed address for that last pass (rcx is 0: it only moves rip on).  The pass
    hits the probe like any other; without it every timer tick after it would land one
    instruction early.
    """
    before = getattr(engine, "_rep_count_before", None)
    engine._rep_count_before = None
    if rep_exit_pass_due(p.ainsn, p.addr, before, machine.rip, machine.reg("rcx"), machine.eflags):
        machine.set_reg("rip", p.addr)


def rep_exit_pass_due(insn: DecodedInsn, addr: int, before: int | None, rip: int, rcx: int, eflags: int) -> bool:
    """Did a step of the rep string instruction at addr (rcx was `before`; rip, rcx and
    eflags are after it, rip fixed up) end it by exhausting the count, so that the
    unstepped CPU's last pass is still to come (see rep_string_exit_pass)?"""
    if before is None or before == 0 or rip == addr:
        return False  # no iteration ran, or the instruction is not finished yet
    if rcx != 0:
        return False  # repe/repne ended on ZF, not on the count
    if insn.opcode in (0xA6, 0xA7, 0xAE, 0xAF):
        zf = bool(eflags & 0x40)
        repe = any(b == 0xF3 for b in insn.raw[: insn.opcode_index])
        if zf != repe:
            return False  # the ZF condition ended it (it is tested before the count)
    return True

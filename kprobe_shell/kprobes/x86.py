"""The x86_64 half of kprobes: instruction slots, the out-of-line copy and its fix-ups.

Mirrors arch/x86_64/kernel/kprobes.c (2.6.12/2.6.13): arch_prepare_kprobe copies the
probed instruction into an insn slot (fixing a RIP-relative displacement so it still
reaches its target from the slot), prepare_singlestep sends the CPU there with TF set,
and resume_execution fixes rip and the stack after the debug trap.

Two places where the 2005 code was wrong are done right here: the `ff` group is
decoded from the ModRM reg field (the 2005 code tested the opcode byte, so indirect
calls did not get their return address fixed), and `iret` is in the "rip is already
absolute" list (the 2005 code had no case for it).
"""
from __future__ import annotations

from dataclasses import dataclass

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone import x86_const as CX

from ..machine.layout import INSN_SLOT_BASE, INSN_SLOT_END, PAGE_SIZE
from .types import ProbeError

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
        return self.opcode in (0xFA, 0xFB, 0x9D, 0xCF)

    def is_rep_string(self) -> bool:
        """A rep/repe/repne-prefixed string instruction (movs, stos, lods, cmps, scas, ins,
        outs): the CPU single-steps it one iteration at a time."""
        return self.opcode in REP_STRING_OPCODES and any(
            b in (0xF2, 0xF3) for b in self.raw[: self.opcode_index]
        )

    def fixup_kind(self) -> str:
        """Which resume_execution case applies (names as the table in the docs)."""
        op = self.opcode
        if op == 0x9C:
            return "pushf"
        if op in (0xC3, 0xCB, 0xC2, 0xCA, 0xCF):
            return "ret/iret: rip absolute"
        if op == 0xE8:
            return "call rel32"
        if op == 0xFF:
            reg = self.modrm_reg
            if reg in (2, 3):
                return "indirect call"
            if reg in (4, 5):
                return "indirect jmp: rip absolute"
        if op == 0xEA:
            return "far jmp: rip absolute"
        return "rip relative to slot"

    def boostable(self) -> bool:
        """May run from the slot followed by `jmp addr+len`, with no debug trap.

        Like the kernel's can_boost(): not for anything whose effect depends on where it
        runs (relative jumps/calls, RIP-relative operands are fine: the displacement is
        fixed), not for what changes flow or IF, and not for pushf (the pushed TF/IF).
        """
        op = self.opcode
        if self.fixup_kind() != "rip relative to slot":
            return False
        # [tests fix] A boosted rep string instruction ran all its iterations in the slot,
        # where the clock does not count, so the guest's clock (and with it the timer and
        # the interleaving of tasks) drifted by one instruction per iteration.
        if self.is_rep_string():
            return False
        if op in (0x70 + i for i in range(16)) or op in (0xE9, 0xEB, 0xE0, 0xE1, 0xE2, 0xE3):
            return False
        if op == 0x0F and self.opcode_index + 1 < len(self.raw):
            op2 = self.raw[self.opcode_index + 1]
            if 0x80 <= op2 <= 0x8F or op2 in (0x05, 0x07, 0x34, 0x35, 0x01, 0x0B):
                return False
        if op in (0xFA, 0xFB, 0x9D, 0xCF, 0xCC, 0xCD, 0xCE, 0xF4, 0x9C, 0xFF, 0xEA, 0xE8):
            return False
        return True


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

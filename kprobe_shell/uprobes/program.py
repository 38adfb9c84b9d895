"""A probed program: its ELF as uprobes sees it (the inode and file offsets of Linux).

ftrace's uprobe_events takes PATH:OFFSET with OFFSET in the file; the breakpoint goes at
the virtual address the executable PT_LOAD segment maps that byte to.  perf probe's
PATH:FUNC[+OFF] goes through the program's symbol table.  A place that is not an
instruction boundary, or not in the program's text, is refused as kprobes refuses it.
"""
from __future__ import annotations

import bisect
import io
import os
from dataclasses import dataclass

from ..kprobes.x86 import BREAKPOINT_INSTRUCTION, DecodedInsn, decode_at
from ..machine.program_symbols import ELF_ET_DYN_BASE
from .types import UprobeError

_PF_X = 1


@dataclass(frozen=True)
class Segment:
    vaddr: int
    offset: int
    filesz: int
    executable: bool


class ProbedProgram:
    """One program file, read once: segments, symbols, instruction boundaries."""

    def __init__(self, path: str) -> None:
        from elftools.elf.elffile import ELFFile

        from ..machine.image import Image, ImageError

        self.path = path
        try:
            with open(path, "rb") as f:
                self.raw = f.read()
        except OSError as exc:
            raise UprobeError(f"{path}: {exc.strerror}") from None
        try:
            self.image = Image.from_bytes(self.raw, path)
            self.symbols = self.image.symbols
            elf = ELFFile(io.BytesIO(self.raw))
        except (ImageError, ValueError, KeyError, IndexError) as exc:
            raise UprobeError(f"{path}: not a program uprobes can read ({exc})") from None
        self.bias = ELF_ET_DYN_BASE if elf.header.e_type == "ET_DYN" else 0
        self.segments = [Segment(s.header.p_vaddr + self.bias, s.header.p_offset, s.header.p_filesz,
                                 bool(s.header.p_flags & _PF_X))
                         for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"]
        self._boundaries: dict[int, list[int]] = {}
        self.elf_bytes = self.raw

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip("/"))

    @property
    def exe(self) -> str:
        """The file's name in the guest: the machine puts programs in /bin."""
        return f"/bin/{self.name}"

    # ------------------------------------------------------------------ addresses
    def vaddr_of_offset(self, offset: int) -> int:
        for seg in self.segments:
            if seg.executable and seg.offset <= offset < seg.offset + seg.filesz:
                return seg.vaddr + offset - seg.offset
        raise UprobeError(f"{self.name}:0x{offset:x} is outside the program's text (no executable "
                          f"segment holds file offset 0x{offset:x}): only code can be probed")

    def offset_of_vaddr(self, vaddr: int) -> int:
        for seg in self.segments:
            if seg.executable and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                return seg.offset + vaddr - seg.vaddr
        raise UprobeError(f"0x{vaddr:x} is outside {self.name}'s text: only code can be probed")

    def vaddr_of_symbol(self, name: str, off: int = 0) -> int:
        sym = self.symbols.get(name)
        if sym is None or sym.type != "FUNC":
            close = self.symbols.closest(name)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UprobeError(f"no function '{name}' in {self.name}{hint}")
        if off and sym.size and off >= sym.size:
            raise UprobeError(f"{name}+0x{off:x} is past the end of {name} (0x{sym.size:x} bytes)")
        return sym.address + self.bias + off

    def read(self, vaddr: int, size: int) -> bytes:
        off = self.offset_of_vaddr(vaddr)
        return self.raw[off:off + size]

    def describe(self, vaddr: int) -> str:
        """`func+0x1c` of a vaddr (or its hex)."""
        hit = self.symbols.containing(vaddr - self.bias)
        if hit is None:
            return f"0x{vaddr:x}"
        sym, off = hit
        return f"{sym.name}+0x{off:x}"

    # ------------------------------------------------------------------ boundaries
    def instruction_boundaries(self, func_vaddr: int, size: int) -> list[int]:
        if func_vaddr not in self._boundaries:
            from ..kprobes.x86 import decode

            code = self.read(func_vaddr, size)
            out, at = [], 0
            while at < len(code):
                insn = decode(code[at:at + 15], func_vaddr + at)
                if insn is None:
                    break
                out.append(func_vaddr + at)
                at += insn.size
            self._boundaries[func_vaddr] = out
        return self._boundaries[func_vaddr]

    def check_probe_address(self, vaddr: int) -> DecodedInsn:
        """Refuse what cannot be probed (uprobe_register's -EINVAL); else decode the insn."""
        self.offset_of_vaddr(vaddr)  # in the text, or refused
        hit = self.symbols.containing(vaddr - self.bias)
        if hit is not None and hit[0].size and hit[0].contains(vaddr - self.bias):
            sym, off = hit
            bounds = self.instruction_boundaries(sym.address + self.bias, sym.size)
            if vaddr not in bounds:
                i = bisect.bisect_left(bounds, vaddr)
                near = ", ".join(f"{sym.name}+0x{b - sym.address - self.bias:x}"
                                 for b in (bounds[i - 1] if i else None, bounds[i] if i < len(bounds) else None)
                                 if b is not None)
                raise UprobeError(f"{sym.name}+0x{off:x} is not an instruction boundary (nearest: {near})")
        where = self.describe(vaddr)
        insn = decode_at(self.read(vaddr, 15), vaddr)
        if insn is None:
            raise UprobeError(f"cannot decode the instruction at {where} in {self.name}")
        refusal = _not_steppable(insn)
        if refusal:
            raise UprobeError(f"{where} ({insn.text}) cannot be probed: {refusal}")
        return insn


def _not_steppable(insn: DecodedInsn) -> str | None:
    """arch_uprobe_analyze_insn: the instructions uprobes will not step out of line."""
    op = insn.opcode
    if op == BREAKPOINT_INSTRUCTION:
        return "it is an int3 already"
    if op in (0xCD, 0xCE, 0xF4):
        return "int, into and hlt are not stepped out of line (Linux's good_insns tables)"
    if op == 0x0F and insn.opcode_index + 1 < insn.length and insn.raw[insn.opcode_index + 1] in (0x05, 0x34):
        return ("a system call stepped out of line would return into the slot (this machine's "
                "syscall gate takes rcx from the slot), so it is refused")
    return None

"""The programs' own symbols, beside the kernel's: where a program's name is looked up.

A machine that runs programs (userspace.py) has, besides the kernel's symbol table, the
symbol table of each program given to it, read from its file on first use.  A program's
symbol is written PROGRAM:SYMBOL, as perf writes a uprobe's place (`perf probe -x
/bin/hello main` lists `hello:main`; uprobe_events take PATH:OFFSET): `hello:main`,
`hello:main+0x10`.  PROGRAM is the program's name (its file name: /bin/NAME in the guest,
and the comm its process runs under) or the host path it was given as.  `symbols` lists a
program's symbols that way, `x` and `disas` take them, and addresses inside a program
are shown as `main+0x10/0x2a [hello]` (perf's [DSO] form) when the current process runs
it.

A static-pie program is loaded at ELF_ET_DYN_BASE (the kernel's fixed base): its symbols'
addresses are biased by it.

The program's frames in a backtrace are walked with its .eh_frame call frame information,
as gdb does for code built without frame pointers (glibc's and musl's are): each frame's
CFA and saved registers from the FDE that covers its pc; where no FDE covers a pc, or its
rule is a DWARF expression, the walk falls back to the frame-pointer chain (rbp), and for
the innermost frame to its function's prologue (a leaf without a frame pointer).
"""
from __future__ import annotations

import bisect
import fnmatch
import io
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .events import ProgramError
from .image import Symbol, SymbolTable, symtab_symbols

if TYPE_CHECKING:
    from .userspace import Program

#: Where the kernel loads a static-pie (uspace.h).
ELF_ET_DYN_BASE = 0x555555554000
#: DWARF's x86_64 register numbers (System V ABI, figure 3.36) of the registers a walk
#: follows: rbx, rbp, rsp, r12-r15, and the return address column.
_DWARF_REGS = {3: "rbx", 6: "rbp", 7: "rsp", 12: "r12", 13: "r13", 14: "r14", 15: "r15"}
_RA_COLUMN = 16
#: PROGRAM:SYMBOL[+OFFSET] in an address expression.
PROGRAM_SYMBOL = re.compile(r"(?P<prog>[^\s:+*$]+):(?P<sym>[A-Za-z_.][\w.@]*)")


class ProgramSymbolError(ProgramError):
    """A PROGRAM:SYMBOL that names no program or no symbol of it."""


@dataclass(frozen=True)
class UserFrame:
    """One frame of a program's stack: its pc, the stack pointer there (the caller's
    CFA), and how it was found ("CFI", "prologue" or "frame pointer")."""

    pc: int
    rsp: int
    how: str


class ProgramSymbols:
    """One program's symbol table (addresses as loaded) and call frame information."""

    def __init__(self, prog: "Program", image: bytes) -> None:
        self.name = prog.name
        self.path = prog.path
        self.bias = ELF_ET_DYN_BASE if image[16:18] == b"\x03\x00" else 0  # ET_DYN: static-pie
        self._image = image
        #: (loaded address, bytes in the file) of each PT_LOAD segment.
        self._segments: list[tuple[int, bytes]] = []
        self.table: SymbolTable | None = self._read_symbols()
        self._fdes: list[tuple[int, int, object]] | None = None

    def _read_symbols(self) -> SymbolTable | None:
        """The .symtab's functions and objects at their loaded addresses, or None when the
        file has none (stripped) or cannot be read."""
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        try:
            elf = ELFFile(io.BytesIO(self._image))
            self._segments = [(seg["p_vaddr"] + self.bias, seg.data()[:seg["p_filesz"]])
                              for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None:
                return None
            symbols = symtab_symbols(symtab, self._image, self.bias)
        except (ELFError, ValueError, KeyError, IndexError, struct.error):
            return None
        return SymbolTable(symbols)

    # ------------------------------------------------------------------ names
    def symbols(self, pattern: str = "*") -> list[Symbol]:
        """The symbols whose names match the glob, at their loaded addresses."""
        return self.table.glob(pattern) if self.table is not None else []

    def lookup(self, name: str) -> Symbol:
        sym = self.table.get(name) if self.table is not None else None
        if sym is None:
            close = self.table.closest(name) if self.table is not None else []
            hint = f" (did you mean {', '.join(f'{self.name}:{c}' for c in close)}?)" if close else ""
            raise ProgramSymbolError(f"no symbol '{name}' in the program {self.name}{hint}")
        return sym

    def containing(self, addr: int) -> tuple[Symbol, int] | None:
        """The symbol holding addr (a loaded address), and the offset into it."""
        return self.table.containing(addr) if self.table is not None else None

    def format(self, addr: int, with_size: bool = True, return_address: bool = False) -> str | None:
        """`sym+0x1c/0x40 [prog]`, or None outside its symbols.  A return address is
        looked up one byte back (a call to a noreturn function may end its caller), and
        shown with its offset from the symbol that holds the call."""
        hit = self.containing(addr - 1 if return_address else addr)
        if hit is None:
            return None
        sym, off = hit[0], addr - hit[0].address
        size = f"/0x{sym.size:x}" if with_size and sym.size else ""
        return f"{sym.name}+0x{off:x}{size} [{self.name}]"

    def file_bytes(self, sym: Symbol) -> bytes:
        """A symbol's bytes as the program's file holds them (those of its segment's
        file part: .bss is not in the file)."""
        for start, data in self._segments:
            if start <= sym.address < start + len(data):
                off = sym.address - start
                return data[off:off + sym.size]
        return b""

    # ------------------------------------------------------------------ call frames
    def _fde_at(self, pc: int):
        """The decoded .eh_frame FDE covering pc (a loaded address), or None."""
        if self._fdes is None:
            self._fdes = _read_fdes(self._image)
        file_pc = pc - self.bias
        i = bisect.bisect_right(self._fdes, (file_pc, float("inf"))) - 1
        if i < 0:
            return None
        start, end, fde = self._fdes[i]
        return fde if start <= file_pc < end else None

    def cfi_step(self, pc: int, regs: dict[str, int], read_u64: Callable[[int], int]) -> dict[str, int] | None:
        """The caller's registers (rip, rsp and the callee-saved ones the FDE restores)
        from this frame's, by the .eh_frame row for pc; None when there is no usable rule
        (no FDE, a DWARF expression, an undefined return address: the outermost frame)."""
        fde = self._fde_at(pc)
        if fde is None:
            return None
        try:
            table = fde.get_decoded().table
        except Exception:  # noqa: BLE001 - malformed CFI: no rule, fall back
            return None
        file_pc = pc - self.bias
        row = None
        for candidate in table:
            if candidate["pc"] <= file_pc:
                row = candidate
        if row is None:
            return None
        cfa_rule = row["cfa"]
        if cfa_rule.expr is not None or cfa_rule.reg not in _DWARF_REGS:
            return None
        cfa = (regs[_DWARF_REGS[cfa_rule.reg]] + cfa_rule.offset) & 0xFFFFFFFFFFFFFFFF
        ra_rule = row.get(_RA_COLUMN)
        if ra_rule is None or ra_rule.type != "OFFSET":
            return None
        caller = dict(regs)
        for column, name in _DWARF_REGS.items():
            rule = row.get(column)
            if rule is not None and rule.type == "OFFSET":
                caller[name] = read_u64(cfa + rule.arg)
        caller["rip"] = read_u64(cfa + ra_rule.arg)
        caller["rsp"] = cfa
        return caller


def _read_fdes(image: bytes) -> list[tuple[int, int, object]]:
    """(start, end, FDE) of the file's .eh_frame entries, sorted by start."""
    from elftools.common.exceptions import ELFError
    from elftools.dwarf.callframe import FDE
    from elftools.elf.elffile import ELFFile

    try:
        dwarf = ELFFile(io.BytesIO(image)).get_dwarf_info()
        if not dwarf.has_EH_CFI():
            return []
        entries = dwarf.EH_CFI_entries()
    except (ELFError, ValueError, KeyError, IndexError, struct.error):
        return []
    fdes = [(e["initial_location"], e["initial_location"] + e["address_range"], e)
            for e in entries if isinstance(e, FDE)]
    return sorted(fdes, key=lambda f: f[0])


class ProgramSymbolIndex:
    """The symbols of every program a machine was given, read when first asked for."""

    def __init__(self, programs: list["Program"], images: list[bytes]) -> None:
        self.programs = programs
        self._images = images
        self._tables: dict[int, ProgramSymbols] = {}

    def __getitem__(self, index: int) -> ProgramSymbols:
        if index not in self._tables:
            self._tables[index] = ProgramSymbols(self.programs[index], self._images[index])
        return self._tables[index]

    def all(self) -> list[ProgramSymbols]:
        """One per distinct program (a program given twice is listed once)."""
        seen: dict[str, ProgramSymbols] = {}
        for index, prog in enumerate(self.programs):
            seen.setdefault(prog.name, self[index])
        return list(seen.values())

    def named(self, name: str) -> ProgramSymbols | None:
        """The program called name (its file name) or given by that host path."""
        for index, prog in enumerate(self.programs):
            if name in (prog.name, prog.path):
                return self[index]
        return None

    def running(self, comm: str | None) -> ProgramSymbols | None:
        """The program a process with this comm runs (comm: the first 15 bytes of the
        name, as the kernel keeps it)."""
        if comm is None:
            return None
        for index, prog in enumerate(self.programs):
            if prog.name[:15] == comm:
                return self[index]
        return None

    def containing_any(self, addr: int, first: ProgramSymbols | None) -> tuple[ProgramSymbols, Symbol] | None:
        """(program, symbol) holding addr: in first (the running program) if it has one
        there, else in the first program that does (programs share addresses)."""
        for prog in ([first] if first is not None else []) + self.all():
            hit = prog.containing(addr)
            if hit is not None:
                return prog, hit[0]
        return None

    def resolve(self, text: str) -> int:
        """The loaded address of PROGRAM:SYMBOL."""
        mt = PROGRAM_SYMBOL.fullmatch(text.strip())
        if mt is None:
            raise ProgramSymbolError(f"'{text}': a program's symbol is PROGRAM:SYMBOL (e.g. hello:main)")
        prog = self.named(mt.group("prog"))
        if prog is None:
            names = ", ".join(p.name for p in self.all()) or "none"
            raise ProgramSymbolError(f"no program '{mt.group('prog')}' on this machine (programs: {names})")
        return prog.lookup(mt.group("sym")).address

    def glob(self, pattern: str) -> list[tuple[ProgramSymbols, Symbol]]:
        """(program, symbol) for `symbols PATTERN`: PATTERN matches a symbol's name in
        every program, or PROGRAM:PATTERN in the programs whose name matches PROGRAM."""
        prog_pattern, _, name_pattern = pattern.rpartition(":") if ":" in pattern else ("*", "", pattern)
        return [(p, s) for p in self.all()
                if fnmatch.fnmatchcase(p.name, prog_pattern) or p.path == prog_pattern
                for s in p.symbols(name_pattern or "*")]

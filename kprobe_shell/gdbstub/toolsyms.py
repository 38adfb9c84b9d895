"""A symbol file for the tool's own pages, which the kernel image knows nothing about.

A kretprobe's hijacked return address in the default kprobe-mode is the booster's `ret`
in the machine's stub page (the kernel's 2.6.25 kretprobe_trampoline is that booster), and
a probed instruction's copy runs in an instruction slot.  gdb learns these names as it
learns a shared library's: the stub lists this file in qXfer:libraries:read (gdb's manual,
"Library List Format") and gdb reads its symbol table.  The file has no contents, only a
NOBITS section spanning the pages and one symbol per region.

gdb names a caller's frame by its return address minus one (the call instruction's last
byte), so the symbol for the booster starts one byte before its `ret`: the hijacked frame
then reads `kretprobe_trampoline`, as a backtrace through a kretprobe does in the kernel.
"""
from __future__ import annotations

import struct

from ..machine.layout import DETOUR_END, DETOUR_ENTRY_BASE, INSN_SLOT_BASE, INSN_SLOT_END, RESERVED_BASE, STUB_PAGE

_EHDR, _PHDR, _SHDR, _SYM = 64, 56, 64, 24
_STT_FUNC_GLOBAL = 0x12


def tool_symbols(booster: int | None) -> list[tuple[str, int, int]]:
    """(name, address, size) of each region of the tool's pages gdb may meet."""
    syms = [("kprobe_insn_slots", INSN_SLOT_BASE, INSN_SLOT_END - INSN_SLOT_BASE),
            ("optprobe_detours", DETOUR_ENTRY_BASE, DETOUR_END - DETOUR_ENTRY_BASE)]
    if booster is not None and STUB_PAGE < booster:
        syms.append(("kprobe_stub_page", STUB_PAGE, booster - 1 - STUB_PAGE))
        syms.append(("kretprobe_trampoline", booster - 1, 2))
    return syms


def tool_symbol_file(symbols: list[tuple[str, int, int]]) -> bytes:
    """An ELF64 x86-64 shared object with the symbols, its one segment at RESERVED_BASE."""
    span = DETOUR_END - RESERVED_BASE
    strtab = b"\0" + b"".join(name.encode() + b"\0" for name, _a, _s in symbols)
    shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    symtab = bytes(_SYM)  # the null symbol
    offset = 1
    for name, addr, size in symbols:
        symtab += struct.pack("<IBBHQQ", offset, _STT_FUNC_GLOBAL, 0, 1, addr, size)
        offset += len(name) + 1
    data_at = _EHDR + _PHDR
    symtab_at, strtab_at = data_at, data_at + len(symtab)
    shstrtab_at = strtab_at + len(strtab)
    shoff = (shstrtab_at + len(shstrtab) + 7) & ~7
    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, _EHDR, shoff, 0, _EHDR, _PHDR, 1, _SHDR, 5, 4)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, RESERVED_BASE, RESERVED_BASE, 0, span, 0x1000)
    sections = [
        bytes(_SHDR),
        struct.pack("<IIQQQQIIQQ", 1, 8, 6, RESERVED_BASE, data_at, span, 0, 0, 0x1000, 0),        # .text
        struct.pack("<IIQQQQIIQQ", 7, 2, 0, 0, symtab_at, len(symtab), 3, 1, 8, _SYM),              # .symtab
        struct.pack("<IIQQQQIIQQ", 15, 3, 0, 0, strtab_at, len(strtab), 0, 0, 1, 0),                # .strtab
        struct.pack("<IIQQQQIIQQ", 23, 3, 0, 0, shstrtab_at, len(shstrtab), 0, 0, 1, 0),            # .shstrtab
    ]
    body = header + phdr + symtab + strtab + shstrtab
    return body + bytes(shoff - len(body)) + b"".join(sections)

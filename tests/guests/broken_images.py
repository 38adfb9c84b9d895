"""Broken guest images, made from a good one by byte surgery or by linking it wrong.

`make_broken_images(good_elf, out_dir)` returns {case: (path, words the refusal must
contain)} for every way an image can be unusable that the loader is expected to name.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import guestbuild

# ELF64 header fields (offsets into the file).
E_TYPE, E_MACHINE, E_ENTRY, E_PHOFF, E_SHOFF = 16, 18, 24, 32, 40
E_PHNUM, E_SHNUM, E_SHSTRNDX = 56, 60, 62
PT_LOAD = 1
PF_R = 4

SIMPLE_SOURCE = '#include "guest.h"\nint main(void) { puts_("hi\\n"); return 0; }\n'


def _patch(raw: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def _load_headers(raw: bytes) -> list[int]:
    """File offsets of the PT_LOAD program headers."""
    phoff = struct.unpack_from("<Q", raw, E_PHOFF)[0]
    phentsize, phnum = struct.unpack_from("<HH", raw, 54)
    return [phoff + i * phentsize for i in range(phnum)
            if struct.unpack_from("<I", raw, phoff + i * phentsize)[0] == PT_LOAD]


def _first_function(raw: bytes) -> tuple[int, str]:
    """(file offset of the .symtab entry, name) of the first sized function symbol."""
    import io

    from elftools.elf.elffile import ELFFile

    symtab = ELFFile(io.BytesIO(raw)).get_section_by_name(".symtab")
    for i, sym in enumerate(symtab.iter_symbols()):
        if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"] and sym.name:
            return symtab["sh_offset"] + i * symtab["sh_entsize"], sym.name
    raise KeyError("no sized function symbol")


def make_broken_images(good: str, out_dir: str | Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    out_dir = Path(out_dir)
    raw = Path(good).read_bytes()
    cases: dict[str, tuple[bytes | str, tuple[str, ...]]] = {}

    def case(name, data, *words):
        cases[name] = (data, words)

    case("missing", None, "no such file")
    case("directory", "DIR", "not a regular file")
    case("empty", b"", "not an ELF file (bad magic)")
    case("text", b"#!/bin/sh\necho not an image\n", "not an ELF file (bad magic)")
    case("random", bytes((i * 167 + 13) & 0xFF for i in range(4096)), "not an ELF file (bad magic)")
    case("magic only", raw[:4], "truncated ELF header (4 bytes)")
    case("32-bit", raw[:4] + b"\x01" + raw[5:], "a 32-bit ELF; the machine runs x86_64 (ELFCLASS64) images")
    case("big-endian", raw[:5] + b"\x02" + raw[6:], "not little-endian")
    case("bad class", raw[:4] + b"\x07" + raw[5:], "unknown ELF class 7")
    case("aarch64", _patch(raw, E_MACHINE, "<H", 183), "built for EM_AARCH64, not x86_64")
    case("pie (ET_DYN)", _patch(raw, E_TYPE, "<H", 3), "position-independent (PIE or shared)", "-static -no-pie")
    case("relocatable (ET_REL)", _patch(raw, E_TYPE, "<H", 1), "a relocatable object (.o)")
    case("core (ET_CORE)", _patch(raw, E_TYPE, "<H", 4), "ELF type ET_CORE, expected an executable (ET_EXEC)")
    case("no program headers", _patch(raw, E_PHNUM, "<H", 0), "no loadable segments")
    case("entry in nowhere", _patch(raw, E_ENTRY, "<Q", 0x10), "the entry point 0x10 is outside every executable segment")
    first = _load_headers(raw)[0]
    case("segment on page 0", _patch(raw, first + 16, "<Q", 0), "a segment at 0x0 overlaps page 0")
    case("segment on the reserved pages", _patch(raw, first + 16, "<Q", 0x40000000),
         "overlaps the tool's reserved pages 0x40000000-0x41000000")
    case("segment above the reserved pages", _patch(raw, first + 16, "<Q", 0x50000000), "lies above 0x40000000")
    case("segment past the file", _patch(raw, first + 32, "<Q", len(raw) * 4), "truncated")
    case("section headers past the file", _patch(raw, E_SHOFF, "<Q", len(raw) + 4096), "truncated (or corrupt)")
    rodata = [h for h in _load_headers(raw) if struct.unpack_from("<I", raw, h + 4)[0] == PF_R][-1]
    ro_vaddr, ro_memsz = struct.unpack_from("<Q", raw, rodata + 16)[0], struct.unpack_from("<Q", raw, rodata + 40)[0]
    case("read-only segment without file bytes", _patch(raw, rodata + 32, "<Q", 0),
         f"the read-only segment 0x{ro_vaddr:x}-0x{ro_vaddr + ro_memsz:x} has 0 of its {ro_memsz} bytes "
         "in the file")
    fn, fn_name = _first_function(raw)
    case("symbol of 2^40 bytes", _patch(raw, fn + 16, "<Q", 1 << 40),
         f"symbol '{fn_name}' at 0x", "claims 0x10000000000 bytes, past the end of its segment")
    case("symbol of 2^64-1 bytes", _patch(raw, fn + 16, "<Q", (1 << 64) - 1),
         f"symbol '{fn_name}' at 0x", "claims 0xffffffffffffffff bytes, past the end of its segment")
    for cut in (16, 63, 64, 200, len(raw) // 2, len(raw) - 1):
        case(f"cut at {cut}", raw[:cut], "truncated")

    paths: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, (data, words) in cases.items():
        path = out_dir / ("broken-" + "".join(c if c.isalnum() else "_" for c in name) + ".elf")
        if data == "DIR":
            os.makedirs(path, exist_ok=True)
        elif data is not None:
            path.write_bytes(data)
        paths[name] = (str(path), words)

    # Linked where the machine cannot put it (a real link, not surgery), and stripped.
    src = out_dir / "simple.c"
    src.write_text(SIMPLE_SOURCE)
    for name, extra, words in (
        ("linked at the reserved pages", ("-Wl,-Ttext-segment=0x40000000",), ("overlaps the tool's reserved pages",)),
        ("stripped", ("-s",), ("no symbol table (stripped?)",)),
    ):
        path = out_dir / ("broken-" + name.replace(" ", "_") + ".elf")
        guestbuild.compile_guest(src, path, extra=extra)
        paths[name] = (str(path), words)
    return paths

"""Loading a guest image: a static, non-PIE x86_64 ELF executable.

The image is the single source of truth for symbols (name -> address, size, type and
address -> sym+off) and, when it was built with -g, for function parameters (DWARF).
Everything is checked before the machine is touched, so a broken file is refused with a
message that names the problem and leaves the shell on its previous machine.
"""
from __future__ import annotations

import bisect
import difflib
import fnmatch
import os
import struct
from dataclasses import dataclass, field
from functools import cached_property

from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS
from elftools.elf.elffile import ELFFile

from ..textsafe import escape_controls
from .abi import ABI_ARG_REGISTERS, Parameter  # noqa: F401 (re-exported)
from .dwarf import read_guarded, read_parameters
from .layout import RESERVED_BASE, RESERVED_END



class ImageError(Exception):
    """The file cannot be used as a guest image; the message says why."""


#: Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size.
_ELF64_SYM = struct.Struct("<IBBHQQ")
#: The symbol types a table keeps (STT_NOTYPE, STT_OBJECT, STT_FUNC), by st_info's low bits.
_KEPT_TYPES = {0: "NOTYPE", 1: "OBJECT", 2: "FUNC"}
_SHN_UNDEF, _SHN_ABS = 0, 0xFFF1


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int
    size: int
    type: str  # "FUNC", "OBJECT" or "NOTYPE"

    @property
    def end(self) -> int:
        return self.address + self.size

    def contains(self, addr: int) -> bool:
        return self.address <= addr < self.address + max(self.size, 1)


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    flags: int  # P_FLAGS bits: PF_R, PF_W, PF_X
    data: bytes

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    @property
    def executable(self) -> bool:
        return bool(self.flags & P_FLAGS.PF_X)

    @property
    def perms(self) -> str:
        return "".join(
            c if self.flags & bit else "-"
            for c, bit in (("r", P_FLAGS.PF_R), ("w", P_FLAGS.PF_W), ("x", P_FLAGS.PF_X))
        )


class SymbolTable:
    """Name -> Symbol, and address -> (Symbol, offset) for code and data symbols."""

    def __init__(self, symbols: list[Symbol]):
        self.by_name: dict[str, Symbol] = {}
        for sym in symbols:
            # Prefer a sized FUNC/OBJECT over a bare label of the same name.
            old = self.by_name.get(sym.name)
            if old is None or (old.size == 0 and sym.size):
                self.by_name[sym.name] = sym
        located = sorted(
            (s for s in self.by_name.values() if s.address),
            key=lambda s: (s.address, -s.size, s.name),
        )
        self._sorted = located
        self._addresses = [s.address for s in located]
        #: Names addresses outside every symbol of the image (a user program's code, see
        #: machine/userspace.py): fallback(addr, with_size) -> str or None.
        self.fallback = None

    def __len__(self) -> int:
        return len(self.by_name)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def __iter__(self):
        return iter(self._sorted)

    def __getitem__(self, name: str) -> Symbol:
        return self.lookup(name)

    def get(self, name: str) -> Symbol | None:
        return self.by_name.get(name)

    def lookup(self, name: str) -> Symbol:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = self.closest(name)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return f"no symbol '{name}' in the image{hint}"

    def closest(self, name: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(name, self.by_name.keys(), n=n, cutoff=0.6)

    def functions(self) -> list[Symbol]:
        return [s for s in self._sorted if s.type == "FUNC" and s.size]

    def glob(self, pattern: str) -> list[Symbol]:
        return [s for s in self._sorted if fnmatch.fnmatchcase(s.name, pattern)]

    def containing(self, addr: int) -> tuple[Symbol, int] | None:
        """The symbol whose extent holds addr (or the nearest label below it)."""
        i = bisect.bisect_right(self._addresses, addr) - 1
        # Walk back over zero-sized labels to a sized symbol that covers addr.
        best = None
        while i >= 0:
            sym = self._sorted[i]
            if sym.size and sym.contains(addr):
                return sym, addr - sym.address
            if best is None and sym.size == 0 and addr - sym.address < 0x1000:
                best = (sym, addr - sym.address)
            if sym.size and sym.end <= addr and best is not None:
                break
            i -= 1
            if i >= 0 and addr - self._sorted[i].address > 0x100000:
                break
        return best

    def format(self, addr: int, with_size: bool = True) -> str:
        """ftrace's "sym+0x1c/0x40" form, or a bare hex address outside every symbol."""
        hit = self.containing(addr)
        if hit is None:
            named = self.fallback(addr, with_size) if self.fallback is not None else None
            return named or f"0x{addr:x}"
        sym, off = hit
        if with_size and sym.size:
            return f"{sym.name}+0x{off:x}/0x{sym.size:x}"
        return f"{sym.name}+0x{off:x}"


@dataclass
class Image:
    """A loaded and validated guest ELF image."""

    path: str
    entry: int
    segments: list[Segment]
    symbols: SymbolTable
    _elf_bytes: bytes = field(repr=False)
    #: The first problem found in the debug info (read when first needed), or None.
    dwarf_error: str | None = field(default=None, repr=False)
    _dwarf_error_reported: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        """The image's name, used as the task name of images without tasks."""
        return os.path.splitext(os.path.basename(self.path))[0]

    @property
    def text_ranges(self) -> list[tuple[int, int]]:
        return [(s.vaddr, s.end) for s in self.segments if s.executable]

    @property
    def text_span(self) -> tuple[int, int]:
        ranges = self.text_ranges
        return min(a for a, _ in ranges), max(b for _, b in ranges)

    def is_text(self, addr: int, size: int = 1) -> bool:
        return any(a <= addr and addr + size <= b for a, b in self.text_ranges)

    def symbol_bytes(self, sym: Symbol) -> bytes:
        """The bytes of a symbol as the file holds them (before any probe is planted)."""
        for seg in self.segments:
            if seg.vaddr <= sym.address < seg.end:
                off = sym.address - seg.vaddr
                return seg.data[off : off + sym.size]
        return b""

    @cached_property
    def parameters(self) -> dict[str, list[Parameter]]:
        """Function name -> its parameters, from DWARF (empty when the image has none)."""

        return read_guarded(self, read_parameters, "argument names unavailable")

    def note_dwarf_error(self, message: str) -> None:
        if self.dwarf_error is None:
            self.dwarf_error = message

    def take_dwarf_warning(self) -> str | None:
        """The debug-info problem, the first time it is asked for after it was found."""
        if self.dwarf_error is None or self._dwarf_error_reported:
            return None
        self._dwarf_error_reported = True
        return self.dwarf_error

    @classmethod
    def load(cls, path: str) -> "Image":
        from ..userfiles import MAX_IMAGE_FILE, UserFileError, printable_name, read_user_file

        shown = printable_name(path)
        if "\0" in path:
            raise ImageError(f"{shown}: the file name contains a NUL byte")
        if not os.path.exists(path):
            raise ImageError(f"{shown}: no such file")
        if not os.path.isfile(path):
            raise ImageError(f"{shown}: not a regular file")
        try:
            raw = read_user_file(path, MAX_IMAGE_FILE)
        except UserFileError as exc:
            raise ImageError(f"{shown}: cannot read: {exc}") from None
        return cls.from_bytes(raw, path)

    @classmethod
    def from_bytes(cls, raw: bytes, path: str = "<bytes>") -> "Image":
        if len(raw) < 4 or raw[:4] != b"\x7fELF":
            raise ImageError(f"{path}: not an ELF file (bad magic)")
        if len(raw) < 64:
            raise ImageError(f"{path}: truncated ELF header ({len(raw)} bytes)")
        if raw[4] == 1:
            raise ImageError(f"{path}: a 32-bit ELF; the machine runs x86_64 (ELFCLASS64) images")
        if raw[4] != 2:
            raise ImageError(f"{path}: unknown ELF class {raw[4]}")
        if raw[5] != 1:
            raise ImageError(f"{path}: not little-endian")
        # A file cut short before the end of its program or section header table: say so,
        # rather than pyelftools' "malformed ELF: expected 4, found 0".
        import struct

        phoff, shoff = struct.unpack_from("<QQ", raw, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", raw, 54)
        for what, off, count, size in (
            ("program headers", phoff, phnum, phentsize),
            ("section headers", shoff, shnum, shentsize),
        ):
            if count and off + count * size > len(raw):
                raise ImageError(
                    f"{path}: truncated (or corrupt): its {what} take bytes {off}-{off + count * size}, "
                    f"the file has {len(raw)}"
                )
        import io

        try:
            elf = ELFFile(io.BytesIO(raw))
            return cls._from_elf(elf, raw, path)
        except ELFError as exc:
            raise ImageError(f"{path}: malformed ELF: {exc}") from None
        except ImageError:
            raise
        except Exception as exc:  # pyelftools raises assorted errors on corrupt input
            raise ImageError(f"{path}: malformed ELF ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_elf(cls, elf: ELFFile, raw: bytes, path: str) -> "Image":
        hdr = elf.header
        if hdr["e_machine"] != "EM_X86_64":
            raise ImageError(f"{path}: built for {hdr['e_machine']}, not x86_64")
        if hdr["e_type"] == "ET_DYN":
            raise ImageError(
                f"{path}: a position-independent (PIE or shared) object; "
                "build with -static -no-pie so it has fixed addresses"
            )
        if hdr["e_type"] == "ET_REL":
            raise ImageError(f"{path}: a relocatable object (.o); link it into an executable first")
        if hdr["e_type"] != "ET_EXEC":
            raise ImageError(f"{path}: ELF type {hdr['e_type']}, expected an executable (ET_EXEC)")

        segments = []
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                raise ImageError(f"{path}: dynamically linked (has an interpreter); build with -static")
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            off, filesz = seg["p_offset"], seg["p_filesz"]
            if off + filesz > len(raw):
                raise ImageError(
                    f"{path}: truncated: a segment at 0x{seg['p_vaddr']:x} needs file bytes "
                    f"up to {off + filesz}, the file has {len(raw)}"
                )
            vaddr, memsz = seg["p_vaddr"], seg["p_memsz"]
            if vaddr < 0x1000:
                raise ImageError(f"{path}: a segment at 0x{vaddr:x} overlaps page 0, which stays unmapped")
            if vaddr < RESERVED_END and vaddr + memsz > RESERVED_BASE:
                raise ImageError(
                    f"{path}: the segment 0x{vaddr:x}-0x{vaddr + memsz:x} overlaps the tool's "
                    f"reserved pages 0x{RESERVED_BASE:x}-0x{RESERVED_END:x}"
                )
            if vaddr + memsz > RESERVED_BASE:
                raise ImageError(
                    f"{path}: the segment at 0x{vaddr:x} lies above 0x{RESERVED_BASE:x}; "
                    "images must be linked below it (without paging, unicorn cannot run high addresses)"
                )
            if filesz < memsz and not seg["p_flags"] & P_FLAGS.PF_W:
                # Zero fill in memory nothing may write: the kernel's tables (task layout,
                # strings) would read as zeros and every task walk would fail later.
                raise ImageError(
                    f"{path}: the read-only segment 0x{vaddr:x}-0x{vaddr + memsz:x} has {filesz} of its "
                    f"{memsz} bytes in the file (p_filesz < p_memsz); only a writable segment may end in zeros"
                )
            segments.append(Segment(vaddr, memsz, seg["p_flags"], raw[off : off + filesz]))
        if not segments:
            raise ImageError(f"{path}: no loadable segments")
        segments.sort(key=lambda s: s.vaddr)
        for a, b in zip(segments, segments[1:]):
            if (a.end + 0xFFF) & ~0xFFF > (b.vaddr & ~0xFFF) and (a.flags != b.flags):
                raise ImageError(
                    f"{path}: segments 0x{a.vaddr:x} ({a.perms}) and 0x{b.vaddr:x} ({b.perms}) "
                    "share a page with different permissions"
                )
        entry = hdr["e_entry"]
        if not any(s.executable and s.vaddr <= entry < s.end for s in segments):
            raise ImageError(f"{path}: the entry point 0x{entry:x} is outside every executable segment")

        symtab = elf.get_section_by_name(".symtab")
        if symtab is None or symtab.num_symbols() <= 1:
            raise ImageError(f"{path}: no symbol table (stripped?); the shell needs symbols to place probes")
        symbols = symtab_symbols(symtab, raw)
        _check_symbol_extents(symbols, segments, path)
        return cls(path=path, entry=entry, segments=segments, symbols=SymbolTable(symbols), _elf_bytes=raw)


def symtab_symbols(symtab, raw: bytes, bias: int = 0) -> list[Symbol]:
    """The named, defined functions, objects and untyped labels of a .symtab section
    (pyelftools' SymbolTableSection of the ELF file raw), at st_value + bias.  A name
    with control characters (ESC, CR) is kept escaped: names are shown in every listing,
    and none may drive the terminal.

    The entries are unpacked here from the file's bytes: pyelftools parses each one
    through its construct tree, which made reading the kernel's table most of a machine's
    start-up.  A table that does not lie whole in the file (a corrupt one) is read by
    pyelftools, whose errors the callers report."""
    offset, size, entsize = symtab["sh_offset"], symtab["sh_size"], symtab["sh_entsize"]
    if entsize != _ELF64_SYM.size or offset + size > len(raw):
        return [Symbol(escape_controls(s.name), s["st_value"] + bias, s["st_size"], s["st_info"]["type"][4:])
                for s in symtab.iter_symbols()
                if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
                and s["st_shndx"] not in ("SHN_UNDEF", "SHN_ABS")]
    strings = symtab.stringtable["sh_offset"]
    symbols = []
    for name_at, info, _other, shndx, value, sym_size in _ELF64_SYM.iter_unpack(
            raw[offset:offset + size - size % entsize]):
        kind = _KEPT_TYPES.get(info & 0xF)
        if kind is None or shndx in (_SHN_UNDEF, _SHN_ABS):
            continue
        start = strings + name_at
        end = raw.find(b"\0", start)
        if end <= start:  # no name, or none that ends inside the file (pyelftools: '')
            continue
        symbols.append(Symbol(escape_controls(raw[start:end].decode("utf-8", errors="replace")),
                              value + bias, sym_size, kind))
    return symbols


def _check_symbol_extents(symbols: list[Symbol], segments: list[Segment], path: str) -> None:
    """A symbol that starts in a segment ends in it: disas, symbol lookups and `sym+off/size`
    all trust st_size, and a corrupt one (2^40, 2^64-1) would send them past the image."""
    starts = [s.vaddr for s in segments]
    for sym in symbols:
        i = bisect.bisect_right(starts, sym.address) - 1
        if i < 0 or sym.address >= segments[i].end:
            continue  # a label outside the loaded image: never disassembled or probed
        seg = segments[i]
        if sym.address + sym.size > seg.end:
            raise ImageError(
                f"{path}: symbol '{sym.name}' at 0x{sym.address:x} claims 0x{sym.size:x} bytes, "
                f"past the end of its segment (0x{seg.end:x})"
            )

"""symtab_symbols reads a .symtab with struct: the same symbols pyelftools' own reading
gives, on the bundled kernels, a test guest and tables with odd entries."""
from __future__ import annotations

import glob
import io
import os
import random
import struct

import pytest
from elftools.elf.elffile import ELFFile

from kprobe_shell.machine.image import Symbol, symtab_symbols
from kprobe_shell.textsafe import escape_controls

from kprobe_shell.images import bundled_image_path


def by_pyelftools(raw: bytes, bias: int) -> list[Symbol]:
    symtab = ELFFile(io.BytesIO(raw)).get_section_by_name(".symtab")
    return [Symbol(escape_controls(s.name), s["st_value"] + bias, s["st_size"], s["st_info"]["type"][4:])
            for s in symtab.iter_symbols()
            if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
            and s["st_shndx"] not in ("SHN_UNDEF", "SHN_ABS")]


def read(raw: bytes, bias: int = 0) -> list[Symbol]:
    return symtab_symbols(ELFFile(io.BytesIO(raw)).get_section_by_name(".symtab"), raw, bias)


def images(build_guest) -> list[str]:
    guest_images = os.path.dirname(os.path.dirname(bundled_image_path()))
    found = sorted(glob.glob(os.path.join(guest_images, "**", "*.elf"), recursive=True))
    return found + [build_guest("bad_access")]


def test_the_same_symbols_as_pyelftools(build_guest):
    paths = images(build_guest)
    assert len(paths) > 1
    for path in paths:
        raw = open(path, "rb").read()
        for bias in (0, 0x555555554000):
            assert read(raw, bias) == by_pyelftools(raw, bias), path


def test_odd_entries_read_as_pyelftools_reads_them(build_guest):
    """Names past the string table or the file, control characters, bad UTF-8, every
    st_info type, special section indexes."""
    raw = bytearray(open(build_guest("bad_access"), "rb").read())
    symtab = ELFFile(io.BytesIO(bytes(raw))).get_section_by_name(".symtab")
    offset, count = symtab["sh_offset"], symtab.num_symbols()
    strings = symtab.stringtable["sh_offset"]
    raw[strings + 1:strings + 4] = b"\x1b\xff["  # an escape and a byte that is not UTF-8
    rng = random.Random(1205)
    for i in range(1, count):
        at = offset + 24 * i
        name, info, other, shndx, value, size = struct.unpack_from("<IBBHQQ", raw, at)
        name = rng.choice([name, 1, len(raw) - strings - 2, len(raw), 2**32 - 1])
        info = rng.choice([info, rng.randrange(256)])
        shndx = rng.choice([shndx, 0, 0xFFF1, 0xFFF2])
        struct.pack_into("<IBBHQQ", raw, at, name, info, other, shndx, value, size)
    raw = bytes(raw)
    assert read(raw) == by_pyelftools(raw, 0)


@pytest.mark.parametrize("more", [1, 1000])
def test_a_table_past_the_end_of_the_file_is_left_to_pyelftools(build_guest, more):
    """A table whose sh_size runs past the end of the file: pyelftools' reading (and its
    error, which the image loader reports)."""
    raw = bytearray(open(build_guest("bad_access"), "rb").read())
    elf = ELFFile(io.BytesIO(bytes(raw)))
    index = elf.get_section_index(".symtab")
    header_at = elf["e_shoff"] + index * elf["e_shentsize"]
    struct.pack_into("<Q", raw, header_at + 32, len(raw) - elf.get_section(index)["sh_offset"] + 24 * more)
    raw = bytes(raw)
    try:
        expected = by_pyelftools(raw, 0)
    except Exception as exc:  # noqa: BLE001 - the same error, whatever it is
        with pytest.raises(type(exc)):
            read(raw)
    else:
        assert read(raw) == expected

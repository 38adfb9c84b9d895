"""Mutated ELF files (headers, program headers, section headers, symbols, DWARF): each is
refused with ImageError naming the file, or it loads, boots, runs, and its debug info is
read without a hang and without any exception (broken DWARF is reported, not raised)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from fuzzsettings import each_example_bounded, profile_settings
from elftools.elf.elffile import ELFFile
from hypothesis import given
from hypothesis import strategies as st

from kprobe_shell import Image, ImageError, Machine, StopEvent, StopReason
from kprobe_shell.tracing.structs import struct_layouts


@pytest.fixture(scope="module")
def good(fuzz_image) -> bytes:
    return Path(fuzz_image).read_bytes()


@pytest.fixture(scope="module")
def regions(good) -> dict[str, tuple[int, int]]:
    """Where each part of the file lies: (offset, size)."""
    elf = ELFFile(io.BytesIO(good))
    h = elf.header
    out = {"header": (0, 64), "program headers": (h["e_phoff"], h["e_phnum"] * h["e_phentsize"]),
           "section headers": (h["e_shoff"], h["e_shnum"] * h["e_shentsize"])}
    for name in (".symtab", ".strtab", ".debug_info", ".debug_abbrev", ".debug_str", ".debug_line", ".text"):
        sec = elf.get_section_by_name(name)
        if sec is not None:
            out[name] = (sec["sh_offset"], sec["sh_size"])
    return out


def load_and_use(raw: bytes) -> str:
    try:
        image = Image.from_bytes(raw, "fuzzed")
        m = Machine(image)
    except ImageError as exc:
        assert str(exc).startswith("fuzzed: ") and "\n" not in str(exc)
        return "refused"
    assert isinstance(image.parameters, dict)
    assert isinstance(struct_layouts(image), dict)
    assert image.dwarf_error is None or image.dwarf_error.startswith("DWARF error in fuzzed: ")
    assert isinstance(m.run(3000), StopEvent)
    assert m.kprobes.check_invariants() == []
    return "ran"


@pytest.mark.timeout(300)
@profile_settings(60)
@given(data=st.data())
@each_example_bounded
def test_mutated_parts_of_a_real_elf(good, regions, data):
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 6))):
        part = data.draw(st.sampled_from(sorted(regions)))
        off, size = regions[part]
        if size <= 0:
            continue
        pos = off + data.draw(st.integers(0, size - 1))
        width = data.draw(st.sampled_from([1, 2, 4, 8]))
        value = data.draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 0xFF])))
        for k in range(width):
            if pos + k < len(raw):
                raw[pos + k] = value if k == 0 else data.draw(st.sampled_from([0, 0xFF, value]))
    load_and_use(bytes(raw))


def test_a_cpu_stopped_off_in_no_memory_is_a_fault(good, regions):
    """Found by the long profile: one byte of the fuzz guest's text made 0x0f sent rip to a
    non-canonical address where unicorn stopped as after a hlt; reading the byte before
    rip raised MachineError out of run() instead of a stop."""
    raw = bytearray(good)
    raw[regions[".text"][0] + 36] = 0x0F
    image = Image.from_bytes(bytes(raw), "fuzzed")
    event = Machine(image).run(3000)
    assert event.reason is StopReason.FAULT and event.message == "the CPU stopped for no known reason"

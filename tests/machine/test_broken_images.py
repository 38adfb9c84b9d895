"""Every broken image the loader knows how to name is refused with ImageError and a
message that says what is wrong (and nothing else escapes, at load or at boot)."""
from __future__ import annotations

import pytest

from broken_images import make_broken_images
from kprobe_shell import Image, ImageError, Machine


@pytest.fixture(scope="module")
def broken(build_guest, tmp_path_factory):
    return make_broken_images(build_guest("workload"), tmp_path_factory.mktemp("broken"))


CASES = [
    "missing", "directory", "empty", "text", "random", "magic only", "32-bit", "big-endian", "bad class",
    "aarch64", "pie (ET_DYN)", "relocatable (ET_REL)", "core (ET_CORE)", "no program headers",
    "entry in nowhere", "segment on page 0", "segment on the reserved pages", "segment above the reserved pages",
    "segment past the file", "section headers past the file", "cut at 16", "cut at 63", "cut at 64",
    "cut at 200", "linked at the reserved pages", "stripped",
    "read-only segment without file bytes", "symbol of 2^40 bytes", "symbol of 2^64-1 bytes",
]


@pytest.mark.parametrize("case", CASES)
def test_broken_image_is_refused_by_name(broken, case):
    path, words = broken[case]
    with pytest.raises(ImageError) as info:
        Machine(path)
    msg = str(info.value)
    assert msg.startswith(path + ":"), msg
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_every_case_is_covered(broken):
    # the half and last-byte cuts have file-size dependent names
    assert set(CASES) <= set(broken) and len(broken) == len(CASES) + 2


@pytest.mark.parametrize("which", ["half", "minus one"])
def test_cut_near_the_end_is_refused(broken, which):
    cuts = sorted((int(k.split()[-1]), k) for k in broken if k.startswith("cut at "))
    name = cuts[-2][1] if which == "half" else cuts[-1][1]
    path, words = broken[name]
    with pytest.raises(ImageError, match="truncated"):
        Machine(path)


def test_symbols_pointing_into_unmapped_memory_are_an_image_error(kernel_path, tmp_path):
    """A kernel image whose task_struct_layout symbol points nowhere: the ELF is fine,
    the machine cannot boot it: an ImageError, not a MachineError."""
    import struct

    from elftools.elf.elffile import ELFFile

    raw = bytearray(open(kernel_path, "rb").read())
    with open(kernel_path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        for i, sym in enumerate(symtab.iter_symbols()):
            if sym.name == "task_struct_layout":
                off = symtab["sh_offset"] + i * symtab["sh_entsize"] + 8  # st_value
                break
    struct.pack_into("<Q", raw, off, 0x3F000000)
    with pytest.raises(ImageError, match="the machine cannot boot this image: cannot read .* not mapped"):
        Machine(Image.from_bytes(bytes(raw), "kernel-bad-layout"))

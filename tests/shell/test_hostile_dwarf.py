"""Broken debug info: a kernel whose DWARF is cyclic or corrupt still loads and works.

As gdb does ("DWARF Error: ... [in module FILE]"), debug info is checked when it is
first needed, the problem is reported once, what is broken is dropped (argument names,
struct layouts), and every other command works as with an image built without -g.
"""
from __future__ import annotations

import io
import textwrap

import pytest
from elftools.elf.elffile import ELFFile

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session

PROGRAM = textwrap.dedent(r"""
    typedef const long clong;
    struct pair { clong a; long b; };
    volatile long counter;
    __attribute__((noinline)) long leaf(clong x, struct pair *p) { counter += x + (p ? p->b : 0); return x * 3 - 7; }
    void _start(void) {
        struct pair pr = {1, 2};
        for (int i = 0; i < 3; i++) leaf(i, &pr);
        __asm__ volatile("cli; hlt");
    }
""")


@pytest.fixture(scope="module")
def good_image(build_c_image) -> str:
    return build_c_image("dwarfcycle", PROGRAM)


def _const_type_ref(elf: ELFFile):
    """(file offset of a const type's DW_AT_type value, the CU-relative offset of the typedef
    that names it) for `typedef const long clong`."""
    dwarf = elf.get_dwarf_info()
    info = elf.get_section_by_name(".debug_info")
    for cu in dwarf.iter_CUs():
        for die in cu.iter_DIEs():
            if die.tag != "DW_TAG_typedef" or die.attributes["DW_AT_name"].value != b"clong":
                continue
            const = die.get_DIE_from_attribute("DW_AT_type")
            attr = const.attributes["DW_AT_type"]
            assert const.tag == "DW_TAG_const_type" and attr.form == "DW_FORM_ref4"
            return info["sh_offset"] + attr.offset, die.offset - cu.cu_offset
    raise AssertionError("no typedef clong in the test image's DWARF")


@pytest.fixture(scope="module")
def cyclic_image(good_image, tmp_path_factory) -> str:
    """The const type of `clong` now points back at the typedef: const -> typedef -> const ..."""
    raw = bytearray(open(good_image, "rb").read())
    with open(good_image, "rb") as f:
        at, typedef_off = _const_type_ref(ELFFile(f))
    raw[at:at + 4] = typedef_off.to_bytes(4, "little")
    path = tmp_path_factory.mktemp("dwarf") / "cyclic.elf"
    path.write_bytes(bytes(raw))
    return str(path)


@pytest.fixture(scope="module")
def corrupt_image(good_image, tmp_path_factory) -> str:
    """.debug_abbrev overwritten with 0xff bytes."""
    raw = bytearray(open(good_image, "rb").read())
    with open(good_image, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".debug_abbrev")
        off, size = sec["sh_offset"], sec["sh_size"]
    raw[off:off + size] = b"\xff" * size
    path = tmp_path_factory.mktemp("dwarf") / "corrupt.elf"
    path.write_bytes(bytes(raw))
    return str(path)


@pytest.fixture(scope="module")
def sibling_loop_image(good_image, tmp_path_factory) -> str:
    """leaf's DW_AT_sibling points back at leaf itself: pyelftools would walk its
    compilation unit in a circle for ever."""
    raw = bytearray(open(good_image, "rb").read())
    with open(good_image, "rb") as f:
        elf = ELFFile(f)
        info = elf.get_section_by_name(".debug_info")
        for cu in elf.get_dwarf_info().iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag == "DW_TAG_subprogram" and die.attributes.get("DW_AT_name") and \
                        die.attributes["DW_AT_name"].value == b"leaf":
                    attr = die.attributes["DW_AT_sibling"]
                    assert attr.form == "DW_FORM_ref4"
                    at = info["sh_offset"] + attr.offset
                    raw[at:at + 4] = (die.offset - cu.cu_offset).to_bytes(4, "little")
    path = tmp_path_factory.mktemp("dwarf") / "siblingloop.elf"
    path.write_bytes(bytes(raw))
    return str(path)


def _session(path: str) -> tuple[Session, io.StringIO]:
    buf = io.StringIO()
    return Session(path, output=Output(buf, color=False)), buf


def test_the_good_image_has_its_argument_names(good_image):
    s, _ = _session(good_image)
    s.execute("p leaf x")
    s.execute("run")
    assert s.machine.image.parameters["leaf"][0].name == "x"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["cyclic_image", "corrupt_image", "sibling_loop_image"])
def test_broken_dwarf_is_reported_once_and_nothing_else_fails(which, request):
    path = request.getfixturevalue(which)
    s, buf = _session(path)
    # A probe with register arguments works, and so does everything else.
    s.execute("p:e1 leaf a=%di")
    s.execute("r leaf $retval")
    s.execute("run")
    for line in ("probes", "trace", "disas leaf", "bt", "regs", "symbols lea*", "x/4xb leaf"):
        s.execute(line)
    # Names from DWARF are refused with the reason, not a pyelftools exception.
    with pytest.raises(CommandError) as info:
        s.execute("p leaf x")
    assert "argument names unavailable" in str(info.value) or "DWARF" in str(info.value)
    text = buf.getvalue()
    assert text.count(f"DWARF error in {path}:") == 1, text
    assert "; argument names unavailable" in text
    assert s.machine.image.parameters == {}
    assert "e1: (leaf+0x0" in text


@pytest.mark.timeout(60)
def test_read_struct_on_broken_dwarf_is_a_clear_error(cyclic_image, corrupt_image, sibling_loop_image):
    from kprobe_shell.tracing.structs import struct_layouts
    from kprobe_shell.machine.image import Image

    for path in (cyclic_image, corrupt_image, sibling_loop_image):
        image = Image.load(path)
        layouts = struct_layouts(image)  # never hangs, never raises
        assert isinstance(layouts, dict)
        assert image.dwarf_error and image.dwarf_error.startswith(f"DWARF error in {path}: ")


@pytest.mark.timeout(60)
def test_the_messages_are_the_documented_ones(cyclic_image):
    s, buf = _session(cyclic_image)
    s.execute("p:e1 leaf a=%di")
    assert f"\nwarning: DWARF error in {cyclic_image}: the type at DIE 0x" in buf.getvalue()
    assert ") refers to itself; argument names unavailable\n" in buf.getvalue()
    with pytest.raises(CommandError) as info:
        s.execute("p leaf x")
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"parse error: DWARF error in {cyclic_image}: the type at DIE 0x")
    assert first.endswith("; argument names unavailable: name arguments by register (%di, ...)")


@pytest.mark.timeout(60)
def test_a_sibling_chain_that_goes_back_is_refused_where_dwarf_is_read(sibling_loop_image, run_shell):
    """Every reader of DIE trees (argument names, struct layouts, perf probe's lines and
    variables) refuses the circle with the DIE named, rather than walking it for ever."""
    s, buf = _session(sibling_loop_image)
    s.execute("p:e1 leaf a=%di")
    assert ") points at 0x" in buf.getvalue() and "not past it inside its unit; argument names" in buf.getvalue()
    r = run_shell(sibling_loop_image, "-batch", "-ex", "probe -V leaf", "-ex", "probe leaf x", "-ex", "info")
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert "DWARF error: the DW_AT_sibling of DIE 0x" in r.stderr, r.stderr

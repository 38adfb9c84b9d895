"""Loading guest images: symbols, segments, entry point, DWARF parameters, and refusals."""
from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

import guestbuild
from kprobe_shell import Image, ImageError, Machine
from kprobe_shell.machine.abi import Parameter


@pytest.fixture(scope="module")
def workload(build_guest):
    return build_guest("workload", debug=True)


@pytest.fixture(scope="module")
def workload_nodebug(build_guest):
    return build_guest("workload")


@pytest.fixture(scope="module")
def machine(workload):
    return Machine(workload)


def elf_symbols(path):
    """Symbols as pyelftools reads them straight from the file: name -> (value, size, type)."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        out = {}
        for s in elf.get_section_by_name(".symtab").iter_symbols():
            if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT"):
                out[s.name] = (s["st_value"], s["st_size"], s["st_info"]["type"][4:])
        return out


# ---------------------------------------------------------------------------- symbols
def test_every_function_and_object_symbol_is_loaded_with_address_size_and_type(machine, workload):
    expected = elf_symbols(workload)
    assert {"main", "score_word", "classify", "checksum", "items"} <= set(expected)
    for name, (value, size, kind) in expected.items():
        sym = machine.symbols.lookup(name)
        assert (sym.address, sym.size, sym.type) == (value, size, kind), name


@pytest.mark.skipif(shutil.which("nm") is None, reason="binutils nm not installed")
def test_function_addresses_agree_with_nm(machine, workload):
    out = subprocess.run(["nm", "--defined-only", workload], capture_output=True, text=True, check=True).stdout
    seen = 0
    for line in out.splitlines():
        addr, kind, name = line.split()
        if kind in "Tt" and name in machine.symbols:
            assert machine.symbols[name].address == int(addr, 16), name
            seen += 1
    assert seen >= 10


def test_address_to_symbol_plus_offset(machine):
    sym = machine.symbols["score_word"]
    assert sym.type == "FUNC" and sym.size > 0x10
    assert machine.symbols.format(sym.address) == f"score_word+0x0/0x{sym.size:x}"
    assert machine.symbols.format(sym.address + 0x7) == f"score_word+0x7/0x{sym.size:x}"
    assert machine.symbols.format(sym.address + 0x7, with_size=False) == "score_word+0x7"
    hit_sym, off = machine.symbols.containing(sym.address + sym.size - 1)
    assert (hit_sym.name, off) == ("score_word", sym.size - 1)
    data = machine.symbols["checksum"]
    assert data.type == "OBJECT" and data.size == 8
    assert machine.symbols.format(data.address + 4) == "checksum+0x4/0x8"
    # Far from every symbol: a bare address.
    assert machine.symbols.format(0x10) == "0x10"


def test_unknown_symbol_suggests_close_names(machine):
    with pytest.raises(KeyError, match="did you mean.*score_word"):
        machine.symbols.lookup("score_wrod")
    assert machine.symbols.get("no_such_thing") is None
    assert "no_such_thing" not in machine.symbols


def test_functions_and_glob(machine):
    names = [s.name for s in machine.symbols.functions()]
    assert {"main", "_start", "fib", "apply", "sort_items", "copy_upper"} <= set(names)
    assert all(machine.symbols[n].type == "FUNC" and machine.symbols[n].size for n in names)
    addrs = [machine.symbols[n].address for n in names]
    assert addrs == sorted(addrs)
    assert {s.name for s in machine.symbols.glob("put*")} == {"putc_", "puts_", "put_hex"}


# ---------------------------------------------------------------------------- segments, entry
def test_entry_point_is_start(machine, workload):
    with open(workload, "rb") as f:
        assert machine.image.entry == ELFFile(f).header["e_entry"]
    assert machine.image.entry == machine.symbols["_start"].address
    assert machine.rip == machine.image.entry


def test_segments_have_the_files_permissions_and_bytes(machine, workload):
    segs = machine.image.segments
    by_perm = {}
    for s in segs:
        by_perm.setdefault(s.perms, []).append(s)
    main = machine.symbols["main"].address
    checksum = machine.symbols["checksum"].address
    words = machine.symbols["words"].address  # const char *const[]: read-only data
    text = [s for s in segs if s.vaddr <= main < s.end]
    data = [s for s in segs if s.vaddr <= checksum < s.end]
    ro = [s for s in segs if s.vaddr <= words < s.end]
    assert len(text) == len(data) == len(ro) == 1
    assert text[0].perms == "r-x" and text[0].executable
    assert data[0].perms == "rw-" and not data[0].executable
    assert ro[0].perms == "r--"
    assert machine.image.is_text(main) and not machine.image.is_text(checksum)
    assert machine.image.text_ranges == [(text[0].vaddr, text[0].end)]
    # Program headers as the file has them.
    with open(workload, "rb") as f:
        loads = [p for p in ELFFile(f).iter_segments() if p["p_type"] == "PT_LOAD"]
    assert sorted((p["p_vaddr"], p["p_memsz"], p["p_flags"]) for p in loads) == sorted(
        (s.vaddr, s.memsz, s.flags) for s in segs
    )
    # Memory holds the file's bytes; bss is zero.
    sym = machine.symbols["score_word"]
    assert machine.read(sym.address, sym.size) == machine.image.symbol_bytes(sym)
    assert machine.read_u64(checksum) == 0


def test_memory_permissions_are_enforced(build_guest):
    # faults.c kind 7 writes to a const (read-only segment): the machine faults.
    m = Machine(build_guest("faults"))
    m.write(m.symbols["fault_kind"].address, (7).to_bytes(8, "little"))
    ev = m.run()
    assert ev.message.startswith("write to read-only memory at ")
    assert ev.fault_address == m.symbols["ro_value"].address


def test_read_and_write_outside_memory_raise_machine_error(machine):
    from kprobe_shell import MachineError

    with pytest.raises(MachineError, match="not mapped"):
        machine.read(0x10, 8)
    with pytest.raises(MachineError, match="not mapped"):
        machine.write(0x20000000, b"x")
    assert not machine.is_mapped(0x10)
    assert machine.is_mapped(machine.symbols["main"].address)


# ---------------------------------------------------------------------------- DWARF
def test_dwarf_parameters_of_a_debug_image(machine):
    params = machine.image.parameters["score_word"]
    assert params == [
        Parameter(index=0, name="a", type="int", size=4, signed=True, is_string=False),
        Parameter(index=1, name="s", type="const char *", size=8, signed=False, is_string=True),
    ]
    assert [p.location for p in params] == ["%rdi", "%rsi"]


def test_dwarf_seventh_parameter_is_on_the_stack(machine):
    params = machine.image.parameters["seven"]
    assert [p.name for p in params] == list("abcdefg")
    assert [p.type for p in params] == [
        "long int", "long int", "int", "unsigned int", "short int", "char", "long int",
    ]
    assert [(p.size, p.signed) for p in params[2:6]] == [(4, True), (4, False), (2, True), (1, True)]
    assert params[5].location == "%r9"
    assert params[6].location == "+8(%rsp)"
    assert machine.image.parameters["fib"][0].type == "int"
    assert machine.image.parameters["sort_items"][0].type == "struct item *"
    assert not machine.image.parameters["sort_items"][0].is_string


def test_image_without_debug_info_has_no_parameters(workload_nodebug):
    assert Machine(workload_nodebug).image.parameters == {}


# ---------------------------------------------------------------------------- refusals
def _refused(path, *needles):
    with pytest.raises(ImageError) as info:
        Machine(str(path))
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_missing_file_is_refused(tmp_path):
    _refused(tmp_path / "nope.elf", "no such file")


def test_directory_is_refused(tmp_path):
    _refused(tmp_path, "not a regular file")


def test_text_file_is_refused(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not an ELF file\n")
    _refused(p, "not an ELF file")


def test_empty_file_is_refused(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    _refused(p, "not an ELF file")


def test_32_bit_image_is_refused(tmp_path, workload):
    p = tmp_path / "i386.elf"
    src = tmp_path / "m32.c"
    src.write_text('void _start(void) { for (;;) __asm__("hlt"); }\n')
    try:
        guestbuild.compile_guest(
            src, p, flags=("-m32", "-ffreestanding", "-nostdlib", "-static", "-no-pie")
        )
    except guestbuild.BuildError:
        raw = bytearray(open(workload, "rb").read())  # no multilib: craft the class byte
        raw[4] = 1
        p.write_bytes(bytes(raw))
    _refused(p, "32-bit")


def test_pie_image_is_refused(tmp_path):
    p = tmp_path / "pie.elf"
    src = tmp_path / "pie.c"
    src.write_text('void _start(void) { for (;;) __asm__("hlt"); }\n')
    guestbuild.compile_guest(src, p, flags=("-O2", "-ffreestanding", "-nostdlib", "-static-pie", "-fPIE"))
    msg = _refused(p, "position-independent", "-no-pie")
    assert str(p) in msg


def test_relocatable_object_is_refused(tmp_path):
    p = tmp_path / "obj.o"
    src = tmp_path / "obj.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    guestbuild.compile_guest(src, p, flags=("-O2", "-ffreestanding", "-c"))
    _refused(p, "relocatable object")


@pytest.mark.skipif(shutil.which("strip") is None, reason="binutils strip not installed")
def test_stripped_image_is_refused(tmp_path, workload_nodebug):
    p = tmp_path / "stripped.elf"
    shutil.copy(workload_nodebug, p)
    subprocess.run(["strip", str(p)], check=True)
    _refused(p, "no symbol table", "stripped")


@pytest.mark.parametrize("keep", [10, 63, 64, 100, 300, 0x1010, "half", "minus100", "minus1"])
def test_truncated_image_is_refused(tmp_path, workload_nodebug, keep):
    raw = open(workload_nodebug, "rb").read()
    n = {"half": len(raw) // 2, "minus100": len(raw) - 100, "minus1": len(raw) - 1}.get(keep, keep)
    p = tmp_path / "cut.elf"
    p.write_bytes(raw[:n])
    _refused(p, "truncated")


def test_random_bytes_are_refused(tmp_path):
    rng = random.Random(20050613)
    p = tmp_path / "noise.bin"
    p.write_bytes(rng.randbytes(8192))
    _refused(p, "not an ELF file")


def test_random_bytes_behind_an_elf_header_are_refused(tmp_path, workload_nodebug):
    raw = open(workload_nodebug, "rb").read()
    rng = random.Random(7)
    for cut in (16, 20, 64):
        p = tmp_path / f"noise{cut}.bin"
        p.write_bytes(raw[:cut] + rng.randbytes(8192))
        with pytest.raises(ImageError):
            Machine(str(p))


def test_corrupted_images_load_or_are_refused_cleanly(workload_nodebug):
    """Bytes flipped in a good image: loaded, or refused with ImageError, never anything
    else (and never slowly)."""
    raw = open(workload_nodebug, "rb").read()
    rng = random.Random(5)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(150):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(0x200) if rng.random() < 0.8 else rng.randrange(len(b))
            b[pos] = rng.randrange(256)
        try:
            Machine(Image.from_bytes(bytes(b), "mutant"))
            outcomes["ok"] += 1
        except ImageError:
            outcomes["refused"] += 1
    assert outcomes["ok"] and outcomes["refused"]


def test_refusal_leaves_nothing_half_loaded(tmp_path, workload_nodebug):
    """A refused file raises before any machine exists; a good one still loads after."""
    p = tmp_path / "cut.elf"
    p.write_bytes(open(workload_nodebug, "rb").read()[:200])
    with pytest.raises(ImageError):
        Image.load(str(p))
    assert Machine(workload_nodebug).run().reason.value == "halted"


def test_large_bss_loads_quickly(tmp_path):
    """A 16 MiB bss is mapped in one go (page-by-page mapping made this take seconds)."""
    import time

    src = tmp_path / "bigbss.c"
    src.write_text(
        '#include "guest.h"\nchar big[16 << 20];\n'
        "int main(void) { big[5] = 1; big[sizeof big - 1] = 2; puts_(\"ok\\n\"); return big[5]; }\n"
    )
    p = guestbuild.compile_guest(src, tmp_path / "bigbss.elf")
    t0 = time.perf_counter()
    m = Machine(str(p))
    assert time.perf_counter() - t0 < 2.0
    assert m.run().reason.value == "halted"
    assert m.console == "ok\n"
    big = m.symbols["big"]
    assert big.size == 16 << 20
    assert m.read(big.address + big.size - 1, 1) == b"\x02"

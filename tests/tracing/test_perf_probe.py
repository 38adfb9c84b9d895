"""perf probe's language: points, the line table, locations through location lists and CFI."""
from __future__ import annotations

import pytest

from kprobe_shell.machine.dwarf_locations import DebugInfo, DwarfLocationError
from kprobe_shell.machine.image import Image
from kprobe_shell.tracing.perf_probe import PerfProbeError, is_perf_syntax, parse_point, translate

from guestbuild import GUESTS_DIR

SOURCE = (GUESTS_DIR / "perfprobe.c").read_text().splitlines()


def source_line(marker: str) -> int:
    """The 1-based line of perfprobe.c holding MARKER (so the tests follow edits of the source)."""
    return next(i for i, text in enumerate(SOURCE, start=1) if marker in text)


@pytest.fixture(scope="module")
def guest(build_guest):
    image = Image.load(build_guest("perfprobe", debug=True))
    return image, DebugInfo(image._elf_bytes, str(GUESTS_DIR))


# ---------------------------------------------------------------------- the point syntax
@pytest.mark.parametrize("text, fields", [
    ("do_fork", dict(function="do_fork")),
    ("do_fork+12", dict(function="do_fork", offset=12)),
    ("do_fork%return", dict(function="do_fork", is_return=True)),
    ("do_fork:3", dict(function="do_fork", rel_line=3)),
    ("do_fork@fork.c:3", dict(function="do_fork", file="fork.c", rel_line=3)),
    ("do_fork;*copy*", dict(function="do_fork", pattern="*copy*")),
    ("fs.c:305", dict(function=None, file="fs.c", line=305)),
    ("kernel/fs.c;*lookup*", dict(function=None, file="kernel/fs.c", pattern="*lookup*")),
])
def test_points_parse_as_perf_reads_them(text, fields):
    point = parse_point(text)
    for key, value in fields.items():
        assert getattr(point, key) == value, key


@pytest.mark.parametrize("text, words", [
    ("do_fork%entry", "only %return"),
    ("do_fork:x", "Invalid line number"),
    ("do_fork+4%return", "use one of"),
    ("fs.c", "needs :LINE"),
    ("do_fork;", "No pattern"),
    ("", "Missing probe point"),
    (":3", "name a function or a source file"),
])
def test_bad_points_say_why(text, words):
    with pytest.raises(PerfProbeError, match=words):
        parse_point(text)


@pytest.mark.parametrize("line, perf", [
    ("p do_sys_open dfd=%di filename=+0(%si):string", False),
    ("p do_sys_open filename:string flags", False),
    ("r4 do_sys_open $retval:s64", False),
    ("p:opens do_sys_open name=+0(%si):string if name ~ \"/etc/*\"", False),
    ("p do_sys_open @jiffies", False),
    ("p do_sys_open:3", True),
    ("p fs.c:305 this.len", True),
    ("p do_generic_file_read file->f_pos", True),
    ("p weigh it->vals[2]", True),
    ("p do_fork $params", True),
    ("p 'do_*'", True),
    ("p do_sys_open name=+0(filename):string", False),   # at the entry: the ABI register
    ("p do_sys_open+0 filename", False),
    ("p do_sys_open+4 filename", True),                  # past it: the DWARF location
    ("p do_sys_open+0x10 name=+0(filename):string", True),
    ("p do_sys_open+4 %di", False),
])
def test_only_perf_lines_leave_the_ftrace_parser(line, perf):
    """Every kprobe_events line keeps its meaning; only what ftrace lacks is translated."""
    assert is_perf_syntax(line) is perf


# ---------------------------------------------------------------------- DWARF facts
def test_a_loop_line_maps_to_one_address_inside_its_function(guest):
    image, info = guest
    loop = source_line("LOOP_LINE")
    fn = info.function("sum_list")
    addrs = info.line_addresses("perfprobe.c", loop)
    assert len(addrs) == 1 and fn.low_pc < addrs[0] < fn.high_pc
    assert loop - fn.decl_line in {line - fn.decl_line for line in info.function_lines(fn)}


def test_a_local_in_a_register_then_on_the_stack(guest):
    """keep lives in a callee-saved register until the clobbering asm, then in a stack slot:
    its location list says so, and the stack slot is found through the CFA."""
    image, info = guest
    fn = info.function("spill")
    keep = lambda addr: next(v for v in info.variables_at(fn, addr) if v.name == "keep")  # noqa: E731
    before = info.line_addresses(None, source_line("long n = note(keep);"), within=fn)[0]
    after = info.line_addresses(None, source_line("n += note(keep);"), within=fn)[0]
    in_reg = info.location(fn, keep(before), before)
    on_stack = info.location(fn, keep(after), after)
    assert in_reg.kind == "reg" and in_reg.reg in ("rbx", "rbp", "r12", "r13", "r14", "r15")
    assert on_stack.kind == "mem" and on_stack.reg == "rsp"


def test_an_optimized_out_variable_is_said_in_perfs_words(guest):
    image, info = guest
    fn = info.function("spill")
    after = info.line_addresses(None, source_line("n += note(keep);"), within=fn)[0]
    unused = next(v for v in info.variables_at(fn, after) if v.name == "unused")
    with pytest.raises(DwarfLocationError, match="Perhaps it has been optimized out"):
        info.location(fn, unused, after)


def test_member_chains_and_elements_compile_to_nested_loads(guest):
    image, info = guest
    [(site, line, explicit)] = translate(info, image.symbols, "p weigh it->st.sum it->vals[2] it->next->id @items[1].st.count")
    assert line == ("p:probe/weigh weigh sum=+16(%di):s64 vals=+40(%di):s64 id=+0(+56(%di)):s64 "
                    "count=@items+72:u32")
    assert site.addr == image.symbols["weigh"].address and not explicit


@pytest.mark.parametrize("line, words", [
    ("p weigh it.st", "'.st' on a pointer"),
    ("p weigh it->nothing", "has no member 'nothing'"),
    ("p weigh it->st", "name a member"),
    ("p weigh it->vals[9]", "past the end"),
    ("p weigh nobody", "Failed to find 'nobody'"),
    ("p weigh%return it->id", "a return probe sees no locals"),
    ("r weigh:1", "a return probe goes on a function's entry"),
    ("p nosuchfunction:3", "no symbol .nosuchfunction."),
])
def test_bad_arguments_say_why(guest, line, words):
    image, info = guest
    with pytest.raises((PerfProbeError, DwarfLocationError), match=words):
        translate(info, image.symbols, line)



def test_offsets_are_read_as_perf_reads_them_and_bad_ones_refused():
    """strtoul(.., 0), as perf does: a leading 0 is octal ('+01' once raised ValueError, a
    case the long fuzz profile found); digits that are not ASCII, bad octal and numbers too
    large for 64 bits are refused with the point named."""
    from kprobe_shell.tracing.perf_probe import PerfProbeError, parse_point

    assert [parse_point(t).offset for t in ("walk+01", "walk+010", "walk+0x10", "walk+16")] == [1, 8, 16, 16]
    for bad in ("walk+099", "walk+0x", "walk+" + "9" * 5000, "walk+\u0663", "walk:\u0663"):
        with pytest.raises(PerfProbeError, match="Invalid"):
            parse_point(bad)

"""Tests for fetch-argument evaluation and ftrace-style formatting."""

import struct

import pytest

from kprobe_shell.tracing.fetch import (
    FETCH_TYPES,
    MAX_STRING_SIZE,
    Arg,
    Comm,
    Deref,
    FetchFault,
    Immediate,
    Memory,
    NamedParam,
    Register,
    RetVal,
    StackAddr,
    StackEntry,
    Symbol,
    UnresolvedParamError,
    bitfield_type,
    evaluate,
    filter_values,
    format_value,
    match_filter,
    python_value,
    read_string,
    render_args,
)
from kprobe_shell.tracing.probe_events import parse_probe_event

T = FETCH_TYPES

STACK = 0xFFFFC90000010000  # rsp at the probe hit
DATA = 0xFFFFFFFF82000000  # kernel data: symbols live here
HEAP = 0xFFFF888000100000  # a struct and strings
PAGE_EDGE = 0xFFFF888000200000  # start of a mapped page followed by a hole
KTEXT = 0xFFFFFFFF81000000


class FakeContext:
    """Registers in a dict, memory as separate byte regions; gaps fault."""

    def __init__(self, regs=None, regions=None, symbols=None, *, is_return=False,
                 comm="bash", pid=4242):
        self.regs = dict(regs or {})
        self.regions = {base: bytes(data) for base, data in (regions or {}).items()}
        self.symbols = dict(symbols or {})
        self.is_return = is_return
        self._comm = comm
        self._pid = pid
        self.reads = []

    def reg(self, name):
        return self.regs.get(name, 0)

    def read_mem(self, addr, size):
        self.reads.append((addr, size))
        for base, data in self.regions.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base: addr - base + size]
        raise FetchFault(addr)

    def symbol_address(self, name):
        return self.symbols[name]

    def symbolize(self, addr):
        for name, (start, size) in {"do_fork": (KTEXT, 0x40)}.items():
            if start <= addr < start + size:
                return f"{name}+0x{addr - start:x}/0x{size:x}"
        return f"0x{addr:x}"

    def comm(self):
        return self._comm

    def pid(self):
        return self._pid

    def retval(self):
        return self.regs.get("rax", 0)


def q(*words):
    """Little-endian 64-bit words."""
    return b"".join(struct.pack("<Q", w & (1 << 64) - 1) for w in words)


@pytest.fixture
def ctx():
    heap = bytearray(0x200)
    heap[0x00:0x08] = q(HEAP + 0x100)  # struct: +0 -> pointer to "/etc/passwd"
    heap[0x08:0x10] = q(HEAP + 0x40)  # +8 -> pointer to a second struct
    heap[0x10:0x14] = struct.pack("<i", -2)  # +0x10: int -2
    heap[0x14:0x18] = struct.pack("<I", 0b1011_0110)  # +0x14: flags word
    heap[0x40:0x48] = q(0xDEADBEEF)  # second struct +0
    heap[0x48:0x50] = q(HEAP + 0x120)  # second struct +8 -> "hi"
    heap[0x100:0x10C] = b"/etc/passwd\0"
    heap[0x120:0x123] = b"hi\0"
    stack = q(KTEXT + 0x1C, 0x7777, 0x8888, 0x9999)  # return address, then arg7, arg8, ...
    return FakeContext(
        regs={
            "rdi": HEAP, "rsi": HEAP + 0x100, "rdx": 0x8000, "rcx": 4,
            "r8": 5, "r9": 6, "rax": (-12) & (1 << 64) - 1, "rsp": STACK,
            "rip": KTEXT, "eflags": 0x246,
        },
        regions={
            HEAP: heap,
            STACK: stack,
            DATA: q(0x1234_5678_9ABC_DEF0, KTEXT + 4),
            PAGE_EDGE - 6: b"abcdef",  # a string running into unmapped memory
        },
        symbols={"jiffies": DATA, "do_fork": KTEXT},
    )


# --------------------------------------------------------------------------
# evaluate(): raw values
# --------------------------------------------------------------------------

class TestEvaluate:
    def test_register(self, ctx):
        assert evaluate(Register("rdi"), ctx) == HEAP

    def test_register_is_truncated_to_type(self, ctx):
        assert evaluate(Register("rax"), ctx, T["u8"]) == 0xF4
        assert evaluate(Register("rax"), ctx, T["u32"]) == 0xFFFFFFF4

    @pytest.mark.parametrize("n, expected", [
        (1, HEAP), (2, HEAP + 0x100), (3, 0x8000), (4, 4), (5, 5), (6, 6),
        (7, 0x7777), (8, 0x8888),  # past six registers: rsp+8, rsp+16
    ])
    def test_function_arguments_follow_sysv_abi(self, ctx, n, expected):
        assert evaluate(Arg(n), ctx) == expected

    def test_stack(self, ctx):
        assert evaluate(StackAddr(), ctx) == STACK
        assert evaluate(StackEntry(0), ctx) == KTEXT + 0x1C  # the return address
        assert evaluate(StackEntry(2), ctx) == 0x8888

    def test_stack_entry_beyond_mapped_stack_faults(self, ctx):
        with pytest.raises(FetchFault):
            evaluate(StackEntry(100), ctx)

    def test_retval(self, ctx):
        ctx.is_return = True
        assert evaluate(RetVal(), ctx) == (-12) & (1 << 64) - 1

    def test_memory_reads_the_type_size(self, ctx):
        assert evaluate(Memory(DATA), ctx) == 0x123456789ABCDEF0
        assert evaluate(Memory(DATA), ctx, T["u16"]) == 0xDEF0
        assert ctx.reads[-1] == (DATA, 2)

    def test_small_read_at_end_of_mapping_does_not_fault(self, ctx):
        assert evaluate(Memory(PAGE_EDGE - 1), ctx, T["u8"]) == ord("f")
        with pytest.raises(FetchFault):
            evaluate(Memory(PAGE_EDGE - 1), ctx, T["u16"])

    def test_symbol_is_resolved_at_fetch_time(self, ctx):
        assert evaluate(Symbol("jiffies", 8), ctx) == KTEXT + 4
        ctx.symbols["jiffies"] = DATA + 8
        assert evaluate(Symbol("jiffies"), ctx) == KTEXT + 4

    def test_unknown_symbol_faults(self, ctx):
        with pytest.raises(FetchFault, match="nosuch"):
            evaluate(Symbol("nosuch"), ctx)

    def test_deref(self, ctx):
        assert evaluate(Deref(0x10, Register("rdi")), ctx, T["s32"]) == 0xFFFFFFFE

    def test_nested_deref(self, ctx):
        assert evaluate(Deref(0, Deref(8, Register("rdi"))), ctx) == 0xDEADBEEF

    def test_negative_deref_offset(self, ctx):
        assert evaluate(Deref(-0x100, Register("rsi")), ctx) == HEAP + 0x100

    def test_null_pointer_deref_faults(self, ctx):
        with pytest.raises(FetchFault) as info:
            evaluate(Deref(8, Register("r11")), ctx)
        assert info.value.address == 8

    def test_immediate(self, ctx):
        assert evaluate(Immediate(-1), ctx, T["s8"]) == 0xFF

    def test_comm_defaults_to_string(self, ctx):
        assert evaluate(Comm(), ctx) == b"bash"

    def test_bitfield_is_extracted(self, ctx):
        # flags word 0b1011_0110: bits 2..4 are 0b101
        assert evaluate(Deref(0x14, Register("rdi")), ctx, bitfield_type(3, 2, 4)) == 0b101
        assert ctx.reads[-1] == (HEAP + 0x14, 4)

    def test_unresolved_param_is_an_error(self, ctx):
        with pytest.raises(UnresolvedParamError, match="resolve_param"):
            evaluate(NamedParam("filename"), ctx)


class TestStrings:
    def test_string_is_read_at_the_dereference_address(self, ctx):
        # ftrace: +0(%si):string reads the string %si points to ...
        assert evaluate(Deref(0, Register("rsi")), ctx, T["string"]) == b"/etc/passwd"
        # ... so a char * stored in a struct field needs one more level.
        assert evaluate(Deref(0, Deref(0, Register("rdi"))), ctx, T["string"]) == b"/etc/passwd"

    def test_string_at_symbol_and_address(self, ctx):
        ctx.symbols["banner"] = HEAP + 0x120
        assert evaluate(Symbol("banner"), ctx, T["string"]) == b"hi"
        assert evaluate(Memory(HEAP + 0x100), ctx, T["ustring"]) == b"/etc/passwd"

    def test_string_running_into_unmapped_memory_faults(self, ctx):
        with pytest.raises(FetchFault):
            evaluate(Memory(PAGE_EDGE - 6), ctx, T["string"])

    def test_string_ending_just_before_a_hole_is_fine(self, ctx):
        ctx.regions[PAGE_EDGE - 6] = b"abcde\0"
        assert evaluate(Memory(PAGE_EDGE - 6), ctx, T["string"]) == b"abcde"

    def test_string_is_capped_like_strncpy_from_kernel_nofault(self, ctx):
        ctx.regions[0x10000] = b"A" * 1000
        assert read_string(ctx, 0x10000) == b"A" * (MAX_STRING_SIZE - 1)

    def test_string_crossing_a_page_boundary(self, ctx):
        ctx.regions[0x20000 - 3] = b"abcdef\0"
        assert read_string(ctx, 0x20000 - 3) == b"abcdef"


# --------------------------------------------------------------------------
# format_value(): ftrace print_type functions
# --------------------------------------------------------------------------

class TestFormatValue:
    @pytest.mark.parametrize("value, type_name, text", [
        (0xFF, "u8", "255"),
        (0xFF, "s8", "-1"),
        (0x80, "s8", "-128"),
        (0x7F, "s8", "127"),
        (0xFFFE, "s16", "-2"),
        (0xFFFFFFF4, "s32", "-12"),
        ((1 << 64) - 12, "s64", "-12"),
        ((1 << 64) - 1, "u64", "18446744073709551615"),
        (0x1F, "x8", "0x1f"),
        (0xBEEF, "x16", "0xbeef"),
        (0x8000, "x32", "0x8000"),
        (0x10, "x64", "0x10"),  # no zero padding
        (0xFFFF888000100000, "x64", "0xffff888000100000"),
        (0, "x64", "0x0"),
        (ord("A"), "char", "'A'"),
        (b"/etc/passwd", "string", '"/etc/passwd"'),
        (b"", "string", '""'),
        (b"caf\xc3\xa9", "string", '"caf\u00e9"'),
        (b"\xff", "string", '"\\xff"'),
    ])
    def test_basic(self, value, type_name, text):
        assert format_value(value, T[type_name]) == text

    def test_value_wider_than_the_type_is_truncated(self):
        assert format_value(0x1234, T["x8"]) == "0x34"
        assert format_value(0x1FF, T["u8"]) == "255"

    def test_fault(self):
        assert format_value(None, T["x64"]) == "(fault)"
        assert format_value(FetchFault(0x8), T["string"]) == "(fault)"

    def test_symbol(self, ctx):
        assert format_value(KTEXT + 0x1C, T["symbol"], ctx.symbolize) == "do_fork+0x1c/0x40"
        assert format_value(0x1234, T["symbol"], ctx.symbolize) == "0x1234"
        assert format_value(KTEXT, T["symbol"]) == "0xffffffff81000000"

    def test_bitfield_prints_unsigned_decimal(self):
        assert format_value(5, bitfield_type(3, 2, 4)) == "5"

    @pytest.mark.parametrize("value, type_name, expected", [
        (0xFF, "s8", -1),
        (0xFF, "u8", 255),
        (0xFF, "x8", 255),
        (b"hi", "string", "hi"),
        (ord("z"), "char", "z"),
        (None, "u32", None),
    ])
    def test_python_value(self, value, type_name, expected):
        assert python_value(value, T[type_name]) == expected


# --------------------------------------------------------------------------
# render_args(): whole probe hits
# --------------------------------------------------------------------------

class TestRenderArgs:
    def test_do_sys_open_like_ftrace(self, ctx):
        defn = parse_probe_event(
            "p:myprobe do_sys_open dfd=%ax:s32 filename=+0(%si):string "
            "flags=%dx:x32 mode=$arg4:u16")
        text, values = render_args(defn, ctx)
        assert text == ' dfd=-12 filename="/etc/passwd" flags=0x8000 mode=4'
        assert values == {"dfd": -12, "filename": "/etc/passwd", "flags": 0x8000, "mode": 4}

    def test_default_names_and_types(self, ctx):
        defn = parse_probe_event("p do_fork %cx $stack0:symbol $comm")
        text, values = render_args(defn, ctx)
        assert text == ' arg1=0x4 arg2=do_fork+0x1c/0x40 arg3="bash"'
        assert values == {"arg1": 4, "arg2": KTEXT + 0x1C, "arg3": "bash"}

    def test_return_probe(self, ctx):
        ctx.is_return = True
        defn = parse_probe_event("r do_fork ret=$retval:s64 raw=$retval")
        assert render_args(defn, ctx)[0] == " ret=-12 raw=0xfffffffffffffff4"

    def test_faults_print_fault_and_become_none(self, ctx):
        defn = parse_probe_event(
            "p do_fork s=+0(%r11):string n=+8(%r11):u32 edge=@0xffff8880001ffffa:string "
            "ok=+0(+8(+8(%di))):string")
        text, values = render_args(defn, ctx)
        assert text == ' s=(fault) n=(fault) edge=(fault) ok="hi"'
        assert values == {"s": None, "n": None, "edge": None, "ok": "hi"}

    def test_nested_struct_walk_and_bitfield(self, ctx):
        defn = parse_probe_event("p do_fork v=+0(+8(%di)):x32 bits=+20(%di):b3@2/32 "
                                 "neg=+16(%di):s32 sym=@jiffies+8:symbol")
        text, _ = render_args(defn, ctx)
        assert text == " v=0xdeadbeef bits=5 neg=-2 sym=do_fork+0x4/0x40"

    def test_no_args(self, ctx):
        assert render_args(parse_probe_event("p do_fork"), ctx) == ("", {})


class TestFilterMatching:
    def test_filter_values_add_comm_and_pid(self, ctx):
        assert filter_values({"a": 1}, ctx) == {"a": 1, "$comm": "bash", "$pid": 4242}

    @pytest.mark.parametrize("condition, expected", [
        ('filename ~ "/etc/*"', True),
        ('filename == "/etc/shadow"', False),
        ('$comm == "bash" && $pid == 4242', True),
        ('comm ~ "ba*" && flags', True),
        ("dfd < 0", True),
        ("dfd >= 0 || common_pid == 1", False),
    ])
    def test_match_filter(self, ctx, condition, expected):
        line = f"p do_sys_open dfd=%ax:s32 filename=+0(%si):string flags=%dx if {condition}"
        defn = parse_probe_event(line)
        _, values = render_args(defn, ctx)
        assert match_filter(defn, ctx, values) is expected

    def test_no_filter_always_matches(self, ctx):
        defn = parse_probe_event("p do_fork")
        assert match_filter(defn, ctx, {}) is True

    def test_faulted_argument_does_not_match(self, ctx):
        defn = parse_probe_event('p do_fork s=+0(%r11):string if s == "x" || s != "x"')
        _, values = render_args(defn, ctx)
        assert match_filter(defn, ctx, values) is False

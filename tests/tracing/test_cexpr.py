"""The C expression evaluator and gdb's value printer, on values made by hand (no
machine): C's arithmetic conversions, pointer arithmetic, gdb's formats and strings."""
from __future__ import annotations

import pytest

from kprobe_shell.tracing.cexpr import evaluate
from kprobe_shell.tracing.cvalue import (CHAR, INT, LONG, UINT, ULONG, CType, EvalError, Printer, Value, char_array,
                                         format_scalar, pointer_to)

MEMORY = {0x1000: b"hello\0", 0x2000: (7).to_bytes(4, "little") + (9).to_bytes(4, "little")}


class FakeContext:
    """Two variables and a little memory: n (int 5 in a register), p (int * at 0x2000)."""

    def read(self, addr, size):
        for base, data in MEMORY.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base: addr - base + size]
        raise EvalError(f"Cannot access memory at address 0x{addr:x}")

    def dollar(self, tok):
        raise EvalError(f"unknown register '{tok}'")

    def variable(self, name):
        if name == "n":
            return Value.of_int(INT, 5)
        if name == "p":
            return Value.of_int(pointer_to(INT), 0x2000)
        if name == "s":
            return Value.of_int(pointer_to(CHAR), 0x1000)
        raise EvalError(f'No symbol "{name}" in current context.')

    def has_variable(self, name):
        return name in ("n", "p", "s")

    def type_named(self, name):
        return None


def show(text: str, fmt: str = "") -> str:
    ctx = FakeContext()
    return Printer(ctx.read, lambda a: "", fmt).top(evaluate(ctx, text))


@pytest.mark.parametrize("expr, printed", [
    ("n * 2 + 1", "11"), ("-n", "-5"), ("n / 2", "2"), ("-7 / 2", "-3"), ("-7 % 2", "-1"),
    ("n > 4 && n < 6", "1"), ("!n", "0"), ("~0", "-1"), ("1 << 40", "0"), ("1L << 40", "1099511627776"), ("1u - 2", "4294967295"), ("-1UL", "18446744073709551615"),
    ("0xffffffff", "4294967295"), ("0xffffffff + 1", "0"), ("4294967296", "4294967296"),
    ("*p", "7"), ("p[1]", "9"), ("*(p + 1)", "9"), ("(p + 1) - p", "1"), ("'A'", "65 'A'"),
    ("(char)65", "65 'A'"), ("(unsigned char)255", "255 '\\377'"), ("n ? 1 : 2", "1"),
    ("sizeof(long)", "8"), ("sizeof n", "4"), ("s", '0x1000 "hello"'), ("*s", "104 'h'"),
    ("(long)p", "8192"), ("p", "(int *) 0x2000"), ("&*p", "(int *) 0x2000"),
])
def test_expressions_evaluate_as_c_and_print_as_gdb(expr, printed):
    assert show(expr) == printed


@pytest.mark.parametrize("fmt, value, t, printed", [
    ("x", -1, INT, "0xffffffff"), ("x", -1, LONG, "0xffffffffffffffff"), ("z", 10, INT, "0x0000000a"),
    ("d", 0xFFFFFFFF, UINT, "-1"), ("u", -1, INT, "4294967295"), ("o", 8, INT, "010"), ("o", 0, INT, "0"),
    ("t", 10, INT, "1010"), ("t", 0, INT, "0"), ("c", 65, INT, "65 'A'"), ("c", 200, INT, "-56 '\\310'"),
    ("a", 0x1000, ULONG, "0x1000"),
])
def test_print_formats(fmt, value, t, printed):
    assert format_scalar(value, t, fmt, lambda a: "") == printed


def test_char_arrays_as_gdb_prints_them():
    assert char_array(b"init" + bytes(12)) == '"init", \'\\000\' <repeats 11 times>'
    assert char_array(b"opener1" + bytes(9)) == '"opener1\\000\\000\\000\\000\\000\\000\\000\\000"'
    assert char_array(b"a\nb\0") == '"a\\nb"'
    assert char_array(bytes(4)) == '"\\000\\000\\000"'
    assert char_array(b"x" * 20) == "'x' <repeats 20 times>"


def test_arrays_and_structs_fold_repeats():
    arr = CType("array", 64, target=INT, count=16)
    assert Printer(None, lambda a: "").value(Value(arr, bytes(64))) == "{0 <repeats 16 times>}"
    arr3 = CType("array", 12, target=INT, count=3)
    data = b"".join(i.to_bytes(4, "little") for i in (1, 2, 3))
    assert Printer(None, lambda a: "", "x").value(Value(arr3, data)) == "{0x1, 0x2, 0x3}"


@pytest.mark.parametrize("expr, message", [
    ("nosuch", 'No symbol "nosuch" in current context.'), ("n +", "ends with an operator"),
    ("1/0", "Division by zero"), ("*n", "Attempt to take contents of a non-pointer value."),
    ("&n", "Attempt to take address of value not located in memory."), ("n = 1", "assignments are not supported"),
    ("n @ 1", "Invalid character '@' in expression."), ("(n", "A syntax error in expression, near `'."),
    ("p[100]", "Cannot access memory at address 0x2190"), ("1" * 5000, "numeric constant too large"),
    ("(" * 5000 + "1" + ")" * 5000, "expression nested too deeply"), ("", "Argument required"),
    ("n.x", "Attempt to extract a component of a value that is not a structure."),
])
def test_bad_expressions_say_what_gdb_says(expr, message):
    with pytest.raises(EvalError) as info:
        show(expr)
    assert message in str(info.value)

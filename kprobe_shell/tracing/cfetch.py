"""Fetch programs for C: a probe event's fetch args and filter as the instructions _hit.c
interprets at a hit.

The kernel compiles each fetch argument into fetch instructions when the event is
defined (kernel/trace/trace_probe.c, traceprobe_parse_probe_arg): FETCH_OP_REG,
FETCH_OP_IMM, FETCH_OP_DEREF, then one store (FETCH_OP_ST_RAW, FETCH_OP_ST_MEM,
FETCH_OP_ST_STRING) with FETCH_OP_MOD_BF for a bitfield.  compile_event does the same
with the fetch trees of fetch.py, whose evaluate stays the reference (the values, the
faults) and tracedat.EventFormat.record the reference record.

What C does not do stays on the Python path, decided here at definition (compile_event
returns why): `@SYM` of a symbol the image does not have, a register unicorn cannot read
as one 64-bit value (orig_ax), a perf-probe name not resolved, a filter with `~` (glob), a
filter literal out of the 64-bit range or nested deeper than 31 values, more than 64
arguments.
"""
from __future__ import annotations

import struct
from typing import Callable

from . import fetch as F
from .probe_events import BoolOp, Compare, FieldRef, Literal, Not

# The instructions (enum op in _hit.c).
OP_END, OP_REG, OP_IMM, OP_ADD, OP_LOAD8 = 0, 1, 2, 3, 4
OP_ST_RAW, OP_ST_MEM, OP_ST_STRING, OP_ST_COMM, OP_ST_IMMSTR = 5, 6, 7, 8, 9
OP_FILTER, F_ARG, F_COMM, F_PID, F_INT, F_UINT, F_STR, F_CMP, F_AND, F_OR, F_NOT = range(16, 27)
_CMP = {"==": 0, "!=": 1, "<": 2, "<=": 3, ">": 4, ">=": 5}

MASK64 = (1 << 64) - 1
MAX_ARGS = 64
FILTER_STACK = 31                       # _hit.c's run_filter: values held at once
RECORD_MAX = 32768                      # _hit.c's RECORD_MAX
MAX_STRING_TEXT = 4 * (F.MAX_STRING_SIZE - 1) + 1


class NotCompilable(Exception):
    """This event's fetch or filter has no C program: it stays on the Python path."""


def _words(data: bytes) -> list[int]:
    """Bytes as the u64 words that follow an instruction (zero-padded)."""
    data += b"\0" * (-len(data) % 8)
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def _string_text(raw: bytes) -> bytes:
    """The bytes a string field's record holds for raw (tracedat.EventFormat.record of
    fetch.python_value)."""
    return F.decode_string(raw).encode("utf-8", "replace")


class _Compiler:
    def __init__(self, register_id: Callable[[str], int | None], symbol_address: Callable[[str], int]):
        self.register_id = register_id
        self.symbol_address = symbol_address
        self.code: list[int] = []

    def emit(self, op: int, operand: int = 0) -> None:
        self.code += [op, operand & MASK64]

    def reg(self, name: str) -> None:
        regid = self.register_id(name)
        if regid is None:
            raise NotCompilable(f"register %{name} is not read in C")
        self.emit(OP_REG, regid)

    def value(self, fetch: F.FetchArg) -> None:
        """Leave fetch.py's _value of fetch in val."""
        if isinstance(fetch, F.Register):
            self.reg(fetch.name)
        elif isinstance(fetch, F.StackAddr):
            self.reg("rsp")
        elif isinstance(fetch, F.StackEntry):
            self.reg("rsp")
            self.emit(OP_ADD, 8 * fetch.n)
            self.emit(OP_LOAD8)
        elif isinstance(fetch, F.Arg):
            if fetch.n <= len(F.ARG_REGISTERS):
                self.reg(F.ARG_REGISTERS[fetch.n - 1])
            else:
                self.reg("rsp")
                self.emit(OP_ADD, 8 * (fetch.n - len(F.ARG_REGISTERS)))
                self.emit(OP_LOAD8)
        elif isinstance(fetch, F.RetVal):
            self.reg("rax")
        elif isinstance(fetch, F.Immediate):
            self.emit(OP_IMM, fetch.value)
        elif isinstance(fetch, (F.Memory, F.Symbol, F.Deref)):
            self.address(fetch)
            self.emit(OP_LOAD8)
        else:
            raise NotCompilable(f"{fetch} has no C fetch")

    def address(self, fetch: F.FetchArg) -> None:
        """Leave fetch.py's _address of fetch in val."""
        if isinstance(fetch, (F.Memory, F.Immediate)):
            self.emit(OP_IMM, fetch.address if isinstance(fetch, F.Memory) else fetch.value)
        elif isinstance(fetch, F.Symbol):
            try:
                base = self.symbol_address(fetch.name)
            except KeyError:
                raise NotCompilable(f"unknown symbol {fetch.name!r} (a fault at every hit)") from None
            self.emit(OP_IMM, base + fetch.offset)
        elif isinstance(fetch, F.Deref):
            self.value(fetch.inner)
            self.emit(OP_ADD, fetch.offset)
        else:
            raise NotCompilable(f"{fetch} has no C fetch")

    def argument(self, fetch: F.FetchArg, ftype: F.FetchType) -> int:
        """One argument, as fetch.evaluate stores it; the most bytes its record takes."""
        if ftype.kind == "string":
            if isinstance(fetch, F.Comm):
                self.emit(OP_ST_COMM)
            elif isinstance(fetch, F.ImmString):
                text = _string_text(fetch.text.encode()[: F.MAX_STRING_SIZE - 1])
                self.emit(OP_ST_IMMSTR, len(text))
                self.code += _words(text)
            elif isinstance(fetch, (F.Memory, F.Symbol, F.Deref, F.Immediate)):
                self.address(fetch)
                self.emit(OP_ST_STRING)
            else:
                raise NotCompilable(f"{fetch} is not a memory argument")
            return 4 + MAX_STRING_TEXT
        spec = ftype.size | (ftype.signed << 8) | ((ftype.kind == "char") << 9)
        if ftype.kind == "bitfield":
            spec |= (ftype.bit_offset << 16) | (ftype.bit_width << 24)
        if isinstance(fetch, (F.Memory, F.Symbol, F.Deref)):
            self.address(fetch)
            self.emit(OP_ST_MEM, spec)
        else:
            self.value(fetch)
            self.emit(OP_ST_RAW, spec)
        return ftype.size


def _filter_node(c: _Compiler, node, index: dict[str, int]) -> None:
    if isinstance(node, BoolOp):
        _filter_node(c, node.left, index)
        _filter_node(c, node.right, index)
        c.emit(F_AND if node.op == "&&" else F_OR)
    elif isinstance(node, Not):
        _filter_node(c, node.operand, index)
        c.emit(F_NOT)
    elif isinstance(node, Compare):
        if node.op not in _CMP:
            raise NotCompilable(f"the filter's '{node.op}' is matched in Python")
        _filter_operand(c, node.left, index)
        _filter_operand(c, node.right, index)
        c.emit(F_CMP, _CMP[node.op])
    else:
        raise NotCompilable(f"filter node {node} has no C instruction")


def _filter_operand(c: _Compiler, node, index: dict[str, int]) -> None:
    if isinstance(node, FieldRef):
        if node.key == "$comm":
            c.emit(F_COMM)
        elif node.key == "$pid":
            c.emit(F_PID)
        elif node.key in index:
            c.emit(F_ARG, index[node.key])
        else:
            raise NotCompilable(f"filter field {node.name} is not an argument")
    elif isinstance(node, Literal) and isinstance(node.value, str):
        try:
            text = node.value.encode("utf-8")
        except UnicodeEncodeError:
            raise NotCompilable("a filter string that is not UTF-8") from None
        c.emit(F_STR, len(text))
        c.code += _words(text)
    elif isinstance(node, Literal):
        value = node.value
        if -(1 << 63) <= value < 0:
            c.emit(F_INT, value)
        elif 0 <= value <= MASK64:
            c.emit(F_UINT, value)
        else:
            raise NotCompilable(f"filter literal {value} is beyond 64 bits")
    else:
        raise NotCompilable(f"filter operand {node} has no C instruction")


def _filter_depth(code: list[int]) -> int:
    """The most values the filter's instructions hold at once on _hit.c's stack."""
    depth = most = 0
    i = 0
    while i < len(code):
        op, operand = code[i], code[i + 1]
        if F_ARG <= op <= F_STR:
            depth += 1
        elif op in (F_CMP, F_AND, F_OR):
            depth -= 1
        most = max(most, depth)
        i += 2 + ((operand + 7) // 8 if op == F_STR else 0)
    return most


def compile_event(defn, register_id: Callable[[str], int | None], symbol_address: Callable[[str], int]) -> bytes:
    """The C program of a probe event definition (probe_events.ProbeEventDef): its
    arguments, then its filter.  Raises NotCompilable (saying why) when it must stay on the
    Python path.  register_id(canonical name) -> unicorn's id or None."""
    if len(defn.args) > MAX_ARGS:
        raise NotCompilable(f"more than {MAX_ARGS} arguments")
    c = _Compiler(register_id, symbol_address)
    args_at = 8 + (16 if defn.is_return else 8)
    fixed = args_at
    most = 0
    for arg in defn.args:
        most += c.argument(arg.fetch, arg.type)
        fixed += 4 if arg.type.kind == "string" else arg.type.size
    if args_at + most > RECORD_MAX:
        raise NotCompilable("the record could outgrow the C buffer")
    if defn.filter is not None:
        c.emit(OP_FILTER)
        start = len(c.code)
        _filter_node(c, defn.filter.expr, {arg.name: i for i, arg in enumerate(defn.args)})
        if _filter_depth(c.code[start:]) > FILTER_STACK:
            raise NotCompilable("the filter nests deeper than the C evaluator's stack")
    c.emit(OP_END)
    words = [fixed, args_at, len(defn.args)] + c.code
    return struct.pack(f"<{len(words)}Q", *words)

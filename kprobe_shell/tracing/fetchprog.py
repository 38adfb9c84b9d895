"""Fetch programs: a probe event's fetch args compiled once, run at every hit.

The kernel turns each fetch argument into a short list of fetch instructions when the
event is defined (kernel/trace/trace_probe.c, traceprobe_parse_probe_arg: FETCH_OP_REG,
FETCH_OP_DEREF, FETCH_OP_ST_MEM, FETCH_OP_ST_STRING ...) so that a hit only runs them.
Here each argument becomes two closures chosen at definition: one fetches the raw value
(a register read straight from the CPU, one dereference, the task's comm) and one prints
it and gives its Python value (by its type: hex, unsigned, signed).  A fetch the program
has no step for uses fetch.evaluate, and a type it has no printer for fetch.format_value
and fetch.python_value: fetch.render_args stays the reference, and compile_args's output
is the same text and values, byte for byte (tests/tracing/test_fetch_programs.py runs both
on every hit).
"""
from __future__ import annotations

from typing import Callable

from .fetch import (ARG_REGISTERS, MASK64, MAX_STRING_SIZE, Arg, Comm, Deref, FetchContext, FetchFault, FetchType,
                    Register, RetVal, decode_string, evaluate, format_value, python_value, read_string)

#: step() -> the raw value ftrace stores (int, bytes), or raises FetchFault
Step = Callable[[], "int | bytes"]


def compile_args(defn, ctx: FetchContext) -> Callable[[], tuple[str, dict]]:
    """render() -> (the trace line's argument text, name -> Python value), as
    fetch.render_args(defn, ctx) returns them, for the hit now."""
    program = [(f" {arg.name}=", arg.name, _fetch_step(arg.fetch, arg.type, ctx), *_printers(arg.type, ctx))
               for arg in defn.args]

    def render() -> tuple[str, dict]:
        parts = []
        values = {}
        for prefix, name, step, text_of, value_of in program:
            try:
                raw = step()
            except FetchFault:
                parts.append(prefix + "(fault)")
                values[name] = None
                continue
            parts.append(prefix + text_of(raw))
            values[name] = value_of(raw)
        return "".join(parts), values

    return render


def _register_of(fetch, ctx: FetchContext) -> Callable[[], int] | None:
    """A reader of the register `fetch` names (a register, $argN in a register, $retval)."""
    reader = getattr(ctx, "register_reader", None)
    if reader is None:
        return None
    if isinstance(fetch, Register):
        return reader(fetch.name)
    if isinstance(fetch, Arg) and fetch.n <= len(ARG_REGISTERS):
        return reader(ARG_REGISTERS[fetch.n - 1])
    if isinstance(fetch, RetVal):
        return reader("rax")
    return None


def _fetch_step(fetch, ftype: FetchType, ctx: FetchContext) -> Step:
    reference = lambda: evaluate(fetch, ctx, ftype)  # noqa: E731 - the general case
    if ftype.kind == "string":
        if isinstance(fetch, Comm):
            return lambda: ctx.comm().encode()[: MAX_STRING_SIZE - 1]
        base = _register_of(fetch.inner, ctx) if isinstance(fetch, Deref) else None
        if base is None:
            return reference
        offset = fetch.offset
        return lambda: read_string(ctx, (base() + offset) & MASK64)
    if ftype.kind == "bitfield":
        return reference
    mask = (1 << ftype.bits) - 1
    read = _register_of(fetch, ctx)
    if read is not None:
        return lambda: read() & mask
    base = _register_of(fetch.inner, ctx) if isinstance(fetch, Deref) else None
    if base is None:
        return reference
    offset, size, read_mem = fetch.offset, ftype.size, ctx.read_mem

    def deref() -> int:
        data = read_mem((base() + offset) & MASK64, size)
        if len(data) != size:
            raise FetchFault((base() + offset) & MASK64)
        return int.from_bytes(data, "little")

    return deref


def _printers(ftype: FetchType, ctx: FetchContext) -> tuple[Callable, Callable]:
    """(raw -> the text ftrace prints, raw -> the Python value) for values of `ftype`."""
    mask, bits = (1 << ftype.bits) - 1, ftype.bits
    if ftype.kind == "hex":
        return (lambda raw: f"0x{raw & mask:x}"), (lambda raw: raw & mask)
    if ftype.kind == "int" and not ftype.signed:
        return (lambda raw: str(raw & mask)), (lambda raw: raw & mask)
    if ftype.kind == "int":
        sign = 1 << (bits - 1)

        def signed(raw: int) -> int:
            raw &= mask
            return raw - (1 << bits) if raw & sign else raw

        return (lambda raw: str(signed(raw))), signed
    if ftype.kind == "string":
        return (lambda raw: f'"{decode_string(raw)}"'), decode_string
    symbolize = ctx.symbolize
    return (lambda raw: format_value(raw, ftype, symbolize)), (lambda raw: python_value(raw, ftype))

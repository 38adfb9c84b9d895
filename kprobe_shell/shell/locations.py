"""Locations the way gdb users type them: 0x1000, do_fork, do_fork+0x10, $rsp+8, *ADDR.

Every command that takes a place in the guest (probes, breakpoints, x, until) and the
handler files' targets read it here.
"""
from __future__ import annotations

import re

from ..numbers import NumberError, parse_int
from .registry import CommandError


def parse_number(text: str, what: str = "number") -> int:
    try:
        return parse_int(text)
    except NumberError as exc:
        if exc.too_large:
            raise CommandError(f"numeric constant too large (the {what})") from None
        raise CommandError(f"{exc} (the {what}: decimal, or hex with 0x)") from None


def eval_address(session, text: str) -> int:
    """An address expression: 0x1000, do_fork, do_fork+0x10, $rsp+8, *0x1000 (gdb's form)."""
    text = text.strip().lstrip("*").strip()
    if not text:
        raise CommandError("an address is missing")
    m = session.machine
    text = _program_symbols_to_numbers(m, text)
    if re.search(r"[+-]\s*$", text):
        raise CommandError(f"'{text}' ends with an operator: a number, symbol or $register must follow")
    total, sign = 0, 1
    for tok in re.split(r"\s*([+-])\s*", text):
        if tok == "+":
            sign = 1
            continue
        if tok == "-":
            sign = -1
            continue
        if not tok:
            continue
        if re.search(r"\s", tok):
            first, extra = tok.split(None, 1)
            raise CommandError(f"one address expected, not '{first}' followed by '{extra}'")
        if tok.startswith("$"):
            from ..kprobes.regs import canonical_register

            reg = canonical_register(tok[1:])
            if reg is None:
                raise CommandError(f"unknown register '{tok}'")
            value = m.reg(reg)
        elif re.fullmatch(r"(0x[0-9a-fA-F]+|[0-9]+)", tok):
            value = parse_number(tok, "address")
        else:
            if tok not in m.symbols:
                raise CommandError(m.symbols.unknown_message(tok))
            value = m.symbols[tok].address
        total += sign * value
        sign = 1
    return total & 0xFFFFFFFFFFFFFFFF


def _program_symbols_to_numbers(m, text: str) -> str:
    """Each PROGRAM:SYMBOL in an expression replaced by its address (a program's path may
    hold a '-' or a '+', which must not read as an operator)."""
    from ..machine.program_symbols import PROGRAM_SYMBOL, ProgramSymbolError

    if ":" not in text or m.userspace is None:
        return text
    try:
        return PROGRAM_SYMBOL.sub(lambda mt: f"0x{m.userspace.symbols.resolve(mt.group(0)):x}", text)
    except ProgramSymbolError as exc:
        raise CommandError(str(exc)) from None


def parse_location(session, text: str) -> tuple[str | None, int, int]:
    """LOCATION of a probe: SYMBOL, SYMBOL+OFFSET or ADDRESS -> (symbol, offset, address)."""
    text = text.strip()
    m = session.machine
    mt = re.fullmatch(r"([A-Za-z_.][\w.]*)\s*(?:\+\s*(0x[0-9a-fA-F]+|[0-9]+))?", text)
    if mt:
        name, off = mt.group(1), parse_number(mt.group(2), "offset") if mt.group(2) else 0
        if name not in m.symbols:
            raise CommandError(m.symbols.unknown_message(name))
        return name, off, m.symbols[name].address + off
    addr = eval_address(session, text)
    return None, 0, addr

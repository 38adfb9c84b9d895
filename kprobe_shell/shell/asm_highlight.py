"""Colour for disassembly (`disas`, `x/i`): pygments' NASM lexer, to the terminal."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _asm_lexer():
    from pygments.lexers.asm import NasmLexer

    return NasmLexer()


def highlight_asm(text: str) -> str:
    from pygments import highlight
    from pygments.formatters import TerminalFormatter

    return highlight(text, _asm_lexer(), TerminalFormatter()).rstrip("\n")

"""Syntax colour: a pygments lexer for the command language, and disassembly highlighting.

The lexer reads command names from the registry, so a new command is coloured as soon as
it is registered.
"""
from __future__ import annotations

from functools import lru_cache

from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Keyword, Name, Number, Operator, String, Text


def _command_words() -> str:
    from . import commands  # noqa: F401
    from .registry import REGISTRY

    words = sorted({w for name in REGISTRY.names() for w in [name.split()[0]]}, key=len, reverse=True)
    return "|".join(w.replace("?", r"\?") for w in words)


class KprobeShellLexer(RegexLexer):
    """Commands, probe definitions (p/r/-:), registers, fetch args, numbers and symbols."""

    name = "kprobe-shell"
    aliases = ["kprobe-shell"]

    @classmethod
    def build(cls) -> "KprobeShellLexer":
        words = _command_words()
        cls.tokens = {
            "root": [
                (r"\s*#.*$", Comment),
                (r"(\s*)(p|r\d*|-)(:[\w/]*)?(?=\s|$)", bygroups(Text, Keyword.Declaration, Name.Label), "args"),
                (rf"(\s*)({words})(/\w+)?(?=\s|$)", bygroups(Text, Keyword, Operator), "args"),
                (r"(\s*)(@\w*)", bygroups(Text, Name.Variable.Global), "args"),  # @map[...] = f() on EVENT
                (r".+", Text),
            ],
            "args": [
                (r"\s+", Text),
                (r"#.*$", Comment),
                (r'"[^"]*"', String),
                (r"%\w+|\$\w+", Name.Variable),
                (r"[+-]?0x[0-9a-fA-F]+|[+-]?\d+", Number),
                (r":(u|s|x)(8|16|32|64)|:string|:symbol|:ustring", Keyword.Type),
                (r"\w+=", Name.Attribute),
                (r"--[\w-]+", Name.Attribute),                      # --unsafe, --no-probes
                (r"if\b|&&|\|\||==|!=|<=|>=|[<>!~]", Operator),
                (r"[a-z]+(?:-[a-z]+)+\b", Name.Constant),          # kprobe-mode, single-step
                (r"[A-Za-z_][\w.]*", Name.Function),
                (r".", Text),
            ],
        }
        cls._all_tokens = None  # pygments caches compiled tokens per class
        return cls()


@lru_cache(maxsize=1)
def _asm_lexer():
    from pygments.lexers.asm import NasmLexer

    return NasmLexer()


def highlight_asm(text: str) -> str:
    from pygments import highlight
    from pygments.formatters import TerminalFormatter

    return highlight(text, _asm_lexer(), TerminalFormatter()).rstrip("\n")

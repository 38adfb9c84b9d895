"""Syntax colour for the command line: a pygments lexer.

Each line is resolved as dispatch resolves it (resolve.py), so the head is coloured as
what Enter would run: a command (`r 100` is gdb's run), a probe definition (`r walk`),
a map line (`@fd = hist(retval) on 1`); its arguments are coloured by their shape.
"""
from __future__ import annotations

import re

from pygments.lexer import RegexLexer
from pygments.token import Comment, Keyword, Name, Number, Operator, String, Text

from .asm_highlight import highlight_asm
from .resolve import ResolvedLine, resolve

__all__ = ["KprobeShellLexer", "highlight_asm"]

_EVENT_HEAD = re.compile(r"(p|r\d*|-)(:.*)?")
_MAP_NAME = re.compile(r"@\w*")


class KprobeShellLexer(RegexLexer):
    """Commands, probe definitions (p/r/-:), registers, fetch args, numbers and symbols."""

    name = "kprobe-shell"
    aliases = ["kprobe-shell"]

    tokens = {
        "root": [
            (r"\s*#.*$", Comment),
            (r".+", Text),  # a line that names no command
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

    @classmethod
    def build(cls) -> "KprobeShellLexer":
        return cls()

    def get_tokens_unprocessed(self, text, stack=("root",)):
        pos = 0
        for line in text.splitlines(keepends=True):
            yield from self._line(line, pos)
            pos += len(line)

    def _line(self, line: str, pos: int):
        stripped = line.lstrip()
        lead = len(line) - len(stripped)
        command_text = stripped.rstrip("\r\n")
        resolved = resolve(command_text) if command_text and not command_text.startswith("#") else None
        if resolved is None or resolved.command is None:
            yield from self._lex(line, pos, ("root",))
            return
        if lead:
            yield pos, Text, line[:lead]
        at = pos + lead
        consumed = 0
        for offset, token, value in _head_tokens(resolved):
            yield at + offset, token, value
            consumed = offset + len(value)
        yield from self._lex(stripped[consumed:], at + consumed, ("root", "args"))

    def _lex(self, text: str, pos: int, stack: tuple[str, ...]):
        for index, token, value in RegexLexer.get_tokens_unprocessed(self, text, stack):
            yield pos + index, token, value


def _head_tokens(resolved: ResolvedLine):
    """(offset, token, text) of the words that name the command."""
    head = resolved.head
    if resolved.form == "probe-event":
        m = _EVENT_HEAD.fullmatch(head)
        yield 0, Keyword.Declaration, m.group(1)
        if m.group(2):
            yield len(m.group(1)), Name.Label, m.group(2)
    elif resolved.form == "aggregate":
        yield 0, Name.Variable.Global, _MAP_NAME.match(head).group(0)
    elif resolved.form == "format":
        name, fmt = head.split("/", 1)
        yield 0, Keyword, name
        yield len(name), Operator, "/" + fmt
    else:
        offset = 0
        for part in re.split(r"(\s+)", head):
            if part:
                yield offset, Text if part.isspace() else Keyword, part
                offset += len(part)

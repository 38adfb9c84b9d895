"""The line resolver: which command a line runs, and what its arguments are.

One pure function for every reader of a command line (pgcli's suggest_type plays this
part there): dispatch (Session.execute), tab completion, the highlighter, the prompt's
repeat-on-Enter and `commands ... end` blocks.  So what a line is coloured as, what it
completes as and what it runs cannot disagree.

Besides the registry's names, aliases and unambiguous prefixes, a line may be:
  x/FMT ADDR, print/FMT EXPR     gdb's format glued to the command
  r, r N                         gdb's `run` (a return probe always names a symbol)
  p ..., r[N] ..., -:EVENT       ftrace's kprobe_events lines (`p $EXPR`, `p *EXPR`,
                                 `p a->b`, `p 'c'` ... are gdb's print: GDB_EXPRESSION)
  @NAME[KEYS] = FUNC(F) on EV    bpftrace's map lines
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..numbers import is_decimal
from . import commands  # noqa: F401 - importing the commands registers them all
from .registry import REGISTRY, Command, CommandError

#: The first word of a kprobe_events line: p, p:EVENT, r, r4, r:GRP/EVENT, -:EVENT.
EVENT_WORD = re.compile(r"(p|r\d*)(:\S*)?|-:\S*")

#: Commands that take a gdb format glued to their name (x/4gx).
FORMAT_COMMANDS = ("x", "print", "p", "inspect", "output", "display")

#: How a gdb expression can start that no kprobe_events probe point does (`p $rax`,
#: `p *ptr`, `p &init_task`, `p (long)x`, `p -1`), or a first word with C's member and
#: index operators in it (`p file->f_pos`, `p buf[2]`, `p 2+2`).
GDB_EXPRESSION = re.compile(r"[$*&(!~\-]|[^\s']*(->|\[)|\d+[-+*/%<>&|^]|sizeof\b|'(\\.|[^'\\])'(\s|$)")


def is_event_word(word: str) -> bool:
    return bool(EVENT_WORD.fullmatch(word))


@dataclass(frozen=True)
class ResolvedLine:
    """A command line, resolved.  `command` is None when no command matches (`error` says why)."""

    line: str                  # the line, without surrounding blanks
    command: Command | None
    form: str                  # command, format, run, probe-event, print, aggregate
    head: str                  # the words that name the command, as typed ("x/4gx", "info reg", "r4:ev")
    args: str                  # what follows the head (without a glued format)
    error: str = ""

    @property
    def argument(self) -> str:
        """The text the command's function receives."""
        if self.form in ("probe-event", "aggregate"):
            return self.line  # the whole definition, its first word included
        if self.form == "format":
            return f"/{self.head.split('/', 1)[1]} {self.line.partition(' ')[2]}".strip()
        return self.args

    def arg_kind(self, index: int) -> str | None:
        """The kind of the command's argument at index (completion's question)."""
        return self.command.arg_kind(index) if self.command is not None else None

    def arguments_before(self, word: str) -> list[str] | None:
        """The complete arguments before `word`, the one the cursor is in (its index is
        their number); None when `word` is still part of the command's name."""
        if word and not self.args.endswith(word):
            return None
        return self.args[: len(self.args) - len(word)].split()


def resolve(line: str, *, typing: bool = False) -> ResolvedLine:
    """The command `line` runs.  With typing, the line's last word is still being typed
    (completion): a bare `r` then may still become a return probe, so it is `run` only once
    a count follows it."""
    line = line.strip()
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    try:
        if "/" in word and word.split("/")[0] in FORMAT_COMMANDS:
            name = word.split("/")[0]
            return ResolvedLine(line, REGISTRY.lookup("print" if name == "p" else name), "format", word, rest)
        if word == "r" and _is_run_argument(rest, typing):
            return ResolvedLine(line, REGISTRY.lookup("run"), "run", word, rest)
        if is_event_word(word) and not (word == "p" and GDB_EXPRESSION.match(rest)):
            return ResolvedLine(line, REGISTRY.lookup("probe-event"), "probe-event", word, rest)
        if word == "p":
            return ResolvedLine(line, REGISTRY.lookup("print"), "print", word, rest)
        if word.startswith("@"):
            return ResolvedLine(line, REGISTRY.lookup("aggregate"), "aggregate", word, rest)
        cmd, args = REGISTRY.lookup_line(line)
        return ResolvedLine(line, cmd, "command", line[: len(line) - len(args)].strip() if args else line, args)
    except CommandError as exc:
        return ResolvedLine(line, None, "command", word, rest, str(exc))


def _is_run_argument(rest: str, typing: bool) -> bool:
    """gdb's `r [N] [&]`: nothing, or an instruction count."""
    count = rest.rstrip("& ").strip()
    if typing:
        return is_decimal(count)
    return not count or is_decimal(count)

"""The command registry: the one place that names every command.

Dispatch, `help`, completion and the highlighter all read from here (through the line
resolver, resolve.py), so adding a command is one decorated function.  Lookup follows gdb: a command's full name, one of its
aliases, or any unambiguous prefix of its name.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable

#: Argument kinds the completer understands.
ARG_KINDS = ("location", "symbol", "probe", "file", "setting", "command", "number", "text", "task")

GROUPS = (
    ("running", "Running the guest"),
    ("probes", "Probes"),
    ("inspect", "Looking at the machine"),
    ("trace", "Trace output"),
    ("shell", "The shell itself"),
)


class CommandError(Exception):
    """A command could not do what was asked; nothing was changed.

    Messages echo what the user typed; a word of thousands of characters is cut in the
    first line, so the message stays one readable line."""

    def __init__(self, message: str = "", *args):
        if isinstance(message, str) and len(message) > MAX_ECHOED_WORD:
            first, nl, rest = message.partition("\n")
            first = _LONG_QUOTE.sub(lambda m: m.group()[:KEPT] + "...'", first)
            first = _LONG_WORD.sub(_cut_word, first)
            if len(first) > MAX_FIRST_LINE:
                # Many short words echoed (an argument with a newline in it, say): keep the
                # start, where the message says what is wrong, and the end.
                first = first[:MAX_FIRST_LINE - 80] + " ... " + first[-60:]
            message = first + nl + rest
        super().__init__(message, *args)


#: Words longer than this (no file path is) are cut to their first KEPT characters.
MAX_ECHOED_WORD = 200
KEPT = 60
#: The longest first line an error keeps.
MAX_FIRST_LINE = 300
_LONG_WORD = re.compile(r"\S{%d,}" % (MAX_ECHOED_WORD + 1))
_LONG_QUOTE = re.compile(r"'[^'\n]{%d,}'" % (MAX_ECHOED_WORD + 1))


def _cut_word(m: re.Match) -> str:
    word = m.group()
    return word[:KEPT] + "..." + (word[-1] if word[-1] in "'\")" else "")


class QuitRequest(Exception):
    """`quit` (or Ctrl-D): the prompt, scripts and batch mode end the session."""


@dataclass
class Command:
    name: str
    func: Callable
    group: str
    summary: str
    usage: str
    aliases: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # argument kinds, in order; the last one repeats
    example: str = ""
    details: str = ""
    runs_guest: bool = False  # resumes the guest (not allowed inside probe command lists)
    repeatable: bool = True   # an empty Enter repeats it

    def arg_kind(self, index: int) -> str | None:
        if not self.args:
            return None
        return self.args[min(index, len(self.args) - 1)]


@dataclass
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def command(self, name: str, *, group: str, summary: str, usage: str = "", aliases: tuple[str, ...] = (),
                args: tuple[str, ...] = (), example: str = "", details: str = "", runs_guest: bool = False,
                repeatable: bool = True):
        unknown = [kind for kind in args if kind not in ARG_KINDS]
        if unknown:
            raise ValueError(f"command {name}: unknown argument kind {unknown[0]!r} (one of {', '.join(ARG_KINDS)})")

        def register(func: Callable) -> Callable:
            cmd = Command(name, func, group, summary, usage or name, aliases, args, example,
                          details or (func.__doc__ or "").strip(), runs_guest, repeatable)
            self.commands[name] = cmd
            for alias in aliases:
                self.aliases[alias] = name
            return func

        return register

    def names(self) -> list[str]:
        return sorted(set(self.commands) | set(self.aliases))

    def lookup(self, word: str) -> Command:
        if word in self.commands:
            return self.commands[word]
        if word in self.aliases:
            return self.commands[self.aliases[word]]
        matches = sorted(n for n in self.commands if n.startswith(word))
        if len(matches) == 1:
            return self.commands[matches[0]]
        if len(matches) > 1:
            raise CommandError(f"ambiguous command '{word}': {', '.join(matches)}")
        close = difflib.get_close_matches(word, self.names(), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise CommandError(f"unknown command '{word}'{hint}; try 'help'")

    def lookup_line(self, line: str) -> tuple[Command, str]:
        """The command a line starts with and the rest of the line (multi-word aliases too)."""
        for alias in sorted((a for a in self.aliases if " " in a), key=len, reverse=True):
            if line == alias or line.startswith(alias + " "):
                return self.commands[self.aliases[alias]], line[len(alias):].strip()
        word, _, rest = line.partition(" ")
        return self.lookup(word), rest.strip()

    def by_group(self) -> list[tuple[str, list[Command]]]:
        out = []
        for key, title in GROUPS:
            cmds = sorted((c for c in self.commands.values() if c.group == key), key=lambda c: c.name)
            if cmds:
                out.append((title, cmds))
        return out


#: The shell's registry; command modules register into it on import.
REGISTRY = Registry()
command = REGISTRY.command

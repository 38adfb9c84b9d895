"""Command files (`source FILE`, `kprobe-shell -x FILE`, stdin in batch mode).

`#` starts a comment line; `commands [N]` takes the lines up to `end` as the command list
of a probe or breakpoint.  The first error stops the file with FILE:LINE: message, as gdb
does.
"""
from __future__ import annotations

from typing import Iterable

from .registry import CommandError
from .resolve import resolve


class ScriptError(CommandError):
    """An error inside a command file, located as FILE:LINE."""


def read_block(lines: list[tuple[int, str]], i: int) -> tuple[list[str], int]:
    """The lines after a `commands` line up to its `end`; returns them and the next index."""
    body = []
    while i < len(lines):
        _n, text = lines[i]
        i += 1
        if text.strip() == "end":
            return body, i
        body.append(text.strip())
    raise CommandError("'commands' without a matching 'end'")


def attach_commands(session, header: str, body: list[str]) -> None:
    args = header.split()[1:]
    if args:
        up = session.probes.lookup(args[0])
    elif session.probes:
        up = session.probes[max(session.probes)]
    else:
        raise CommandError("no probe or breakpoint to attach commands to")
    up.silent = bool(body) and body[0] == "silent"
    up.commands = [b for b in body if b and not b.startswith("#")][1 if up.silent else 0 :]
    out = session.out
    out.begin_command()  # in --json, the acknowledgement is a result object like any command's
    out.print(f"Commands for {up.number}: {len(up.commands)} line(s){' (silent)' if up.silent else ''}")
    out.end_command(header.strip(), True, {"probe": up.number, "commands": up.commands, "silent": up.silent})


def is_commands_block(line: str) -> bool:
    """Does the line open a `commands [N] ... end` block (by any name dispatch accepts)?"""
    cmd = resolve(line).command
    return cmd is not None and cmd.name == "commands"


def run_lines(session, source: Iterable[str], name: str) -> None:
    """Run every command of a file; stop at the first error as FILE:LINE: message."""
    lines = [(n, text.rstrip("\n")) for n, text in enumerate(source, 1)]
    i = 0
    while i < len(lines):
        lineno, text = lines[i]
        i += 1
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            if is_commands_block(stripped):
                body, i = read_block(lines, i)
                attach_commands(session, stripped, body)
            else:
                session.execute_and_report(stripped)
        except ScriptError:
            raise
        except CommandError as exc:
            raise ScriptError(f"{name}:{lineno}: {exc}") from None

"""The IPython extension: `%kps CMD` and `%%kps` run shell commands on one machine.

The machine, its probes, the trace and the maps live in one shell session per IPython
kernel, kept from cell to cell as they are from line to line at the shell's prompt.
Commands print what they print in the shell (plain text, no colour), in order; the views
(`probes`, `instances`, `stack`, `slot`, `trace`, `maps`) come back as objects whose
text is the shell's text and whose HTML is drawn (buckets and chains, highlighted slots
linked to their instances, bars), so a notebook shows the picture and keeps the words;
a figure written with --svg FILE is shown inline as well.
"""
from __future__ import annotations

import io
import os
import sys

from ..shell.output import Output
from ..shell.registry import REGISTRY, CommandError
from ..shell.script import attach_commands, is_commands_block, read_block
from . import html
from .view import View


class _Stdout:
    """Writes to whatever sys.stdout is at the moment: IPython swaps it per cell."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return False


def _view_kind(line: str) -> tuple[str | None, str]:
    """The view a command line asks for (None for any other command) and its arguments."""
    try:
        cmd, rest = REGISTRY.lookup_line(line)
    except CommandError:
        return None, ""
    words = rest.split()
    if line.split()[0] in ("p", "r"):
        return None, rest
    if "--svg" in words:
        return ("figure" if cmd.name in ("stack", "instances", "slot", "trace") else None), rest
    if cmd.name == "trace" and words[:1] not in ([], ["show"]):
        return None, rest
    if cmd.name == "maps" and words[:1] == ["clear"]:
        return None, rest
    if cmd.name in ("probes", "instances", "stack", "slot", "trace", "maps"):
        return cmd.name, rest
    return None, rest


class NotebookShell:
    """One shell session for a kernel: `%kps` lines and `%%kps` cells run here."""

    def __init__(self, **session_options):
        from ..shell.session import Session

        self.session = Session(output=Output(_Stdout(), color=False), **session_options)
        self.session.batch = True  # nothing waits for Enter: `pause` only prints its text

    def run(self, line: str) -> View | None:
        """One command; a view comes back as a View, anything else prints as it runs."""
        kind, rest = _view_kind(line)
        if kind is None:
            self.session.execute_and_report(line)
            return None
        out = self.session.out
        out.flush()
        saved, buffer = out.stream, io.StringIO()
        out.stream = buffer
        try:
            data = self.session.execute_and_report(line)
        finally:
            out.flush()
            out.stream = saved
        text = buffer.getvalue()
        text = text[:-1] if text.endswith("\n") else text  # a display ends its own line
        return View(text, self._html(kind, data, text, rest))

    def _html(self, kind: str, data, text: str, rest: str) -> str:
        s = self.session
        if kind == "figure":  # the figure just written, drawn inline too
            from ..figures import take_svg_option

            _others, path = take_svg_option(s, rest, "--svg FILE")
            with open(os.path.expanduser(path), encoding="utf-8") as f:
                svg = f.read()
            return svg[svg.index("<svg"):]
        if kind == "probes":
            return html.probes_html(data)
        if kind == "instances":
            return html.instances_html(s)
        if kind == "stack":
            return html.stack_html(s, len(data) or 1)
        if kind == "slot":
            return html.slot_html(s, data, text)
        if kind == "trace":
            return html.trace_html(s.trace.events)
        return html.maps_html(data or [])

    def run_cell(self, text: str, show) -> None:
        """Every line of a cell, `commands N ... end` blocks too; the first error stops
        the cell, as it stops a command file."""
        lines = list(enumerate(text.splitlines(), 1))
        i = 0
        while i < len(lines):
            lineno, line = lines[i]
            i += 1
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                if is_commands_block(stripped):
                    body, i = read_block(lines, i)
                    attach_commands(self.session, stripped, body)
                    continue
                view = self.run(stripped)
            except CommandError as exc:
                self.session.out.error(f"error: line {lineno}: {exc}")
                return
            if view is not None:
                self.session.out.flush()
                show(view)


def register_magics(ipython) -> None:
    from IPython.core.magic import Magics, line_cell_magic, magics_class
    from IPython.display import display

    @magics_class
    class KpsMagics(Magics):
        @line_cell_magic
        def kps(self, line: str, cell: str | None = None):
            """%kps CMD runs one shell command; %%kps runs one per line of the cell."""
            if cell is None and not line.strip():
                print("usage: %kps COMMAND (or %%kps with one command per line); %kps help lists them")
                return None
            if cell is not None and line.strip():
                print("%%kps takes no arguments: put the commands in the cell")
                return None
            return _run_magic(line, cell, display)

    ipython.register_magics(KpsMagics)


def _run_magic(line: str, cell: str | None, show):
    from ..shell.registry import QuitRequest

    shell = current_shell()
    try:
        if cell is None:
            return shell.run(line)
        shell.run_cell(cell, show)
    except CommandError as exc:
        shell.session.out.error(f"error: {exc}")
    except QuitRequest:
        print("quit: a notebook's machine lives as long as its kernel (restart the kernel for a new one)")
    return None


_SHELL: NotebookShell | None = None


def current_shell() -> NotebookShell:
    """The kernel's shell session, started at the first `%kps`."""
    global _SHELL
    if _SHELL is None:
        _SHELL = NotebookShell()
    return _SHELL

"""Figures for slides, drawn as SVG from the same facts the shell's views print.

    stack --svg FILE          the stack, hijacked return addresses linked to their instances
    instances --svg FILE      kretprobe_inst_table: buckets and chains
    slot N --svg FILE         int3 (or jmp), the original, its copy in the slot, what runs next
    trace --svg FILE          tasks against virtual time: calls as bars, hits as ticks

The drawing uses drawsvg (imported only when a figure is asked for: the shell starts
without it).  Each figure function returns SVG text; the same session state gives the
same bytes.
"""
from __future__ import annotations

import os

from ..shell.registry import CommandError

MISSING = ("drawing figures needs the drawsvg package: pip install 'kprobe-shell[notebook]' "
           "(or pip install drawsvg)")


def take_svg_option(session, rest: str, usage: str) -> tuple[str, str | None]:
    """Split `--svg FILE` off a command's arguments: (the other arguments, FILE or None)."""
    args = session.split_args(rest)
    if "--svg" not in args:
        return rest, None
    i = args.index("--svg")
    if i + 1 >= len(args) or args[i + 1].startswith("--"):
        raise CommandError(f"--svg needs a FILE (usage: {usage})")
    path = args[i + 1]
    others = args[:i] + args[i + 2:]
    return " ".join(others), path


def _drawing_module(name: str):
    try:
        import drawsvg  # noqa: F401
    except ImportError:
        raise CommandError(MISSING) from None
    import importlib

    return importlib.import_module(f".{name}", __name__)


def stack_svg(session, count: int = 16) -> str:
    return _drawing_module("stack").stack_svg(session, count)


def instances_svg(session) -> str:
    return _drawing_module("instances").instances_svg(session)


def slot_svg(session, up) -> str:
    return _drawing_module("slot").slot_svg(session, up)


def timeline_svg(events) -> str:
    if not events:
        raise CommandError("the trace is empty: there is nothing to draw (run the guest with probes first)")
    return _drawing_module("timeline").timeline_svg(events)


def save_svg(session, svg: str, path: str, what: str) -> None:
    """Write a figure and say so; an unwritable path is one clear error."""
    try:
        with open(os.path.expanduser(path), "w", encoding="utf-8") as f:
            f.write(svg)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    session.out.print(f"Saved {what} to {path} (SVG, {len(svg.encode())} bytes)")

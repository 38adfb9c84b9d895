"""Which of the shell's probes record their hits in C (kprobes/chits.py, tracing/_hit.c).

A kprobe whose handler is the shell's own trace handler (`kprobe FUNC`, a kprobe_events
`p:` line) records in C at a jump-optimized address when nothing at its hit needs
Python: no `commands`, not silent, no map lines on it (`@m[...] = count() on N`), no
stack wanted (`set trace-stack on`, a stacktrace trigger), and its fetch args and filter
have a C program (tracing/cfetch.py says why not otherwise).  Return probes, uprobes,
jprobes and handler files stay in Python.  `set trace-hits python` sends every hit
through Python (KprobeEngine.c_hits).

The choice is made again before every run (refresh), so that `commands`, maps, `explain`
or a new handler take effect at the next hit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..kprobes.chits import CRecord, register_id
from ..tracing import cfetch

if TYPE_CHECKING:
    from .session import Session
    from .userprobes import UserProbe


def compile_for_c(machine, defn) -> bytes | str:
    """defn's C program, or why its hits stay in Python."""
    try:
        return cfetch.compile_event(defn, register_id, lambda name: machine.symbols.lookup(name).address)
    except cfetch.NotCompilable as exc:
        return str(exc)


def python_reason(session: "Session", up: "UserProbe") -> str | None:
    """None when up's hits may record in C; else why they run in Python."""
    if up.kind != "k" or not isinstance(up.c_program, bytes):
        return up.c_program if isinstance(up.c_program, str) else "not the shell's trace handler"
    if up.commands:
        return "it has commands"
    if up.silent:
        return "it is silent"
    if session.aggregations.get(up.number):
        return "map lines update on it"
    stacks = session.stacks
    if stacks.all_events or up.event in stacks.events or "emit_trace" in vars(session):
        return "a stack is recorded with its events"
    if not up.enabled:
        return "disabled"
    return None


def refresh(session: "Session") -> None:
    """Set each of the shell's kprobes' c_record (None: the Python path), then have the
    optimizer take them in (before every run)."""
    m = session.machine
    ring = getattr(getattr(session.trace, "ring", None), "handle", 0)
    for up in session.probes.values():
        obj = up.obj
        if not hasattr(obj, "c_record"):
            continue
        if ring and python_reason(session, up) is None:
            obj.c_record = CRecord(session.trace.event_id(up.event), ring, up.c_program, obj.pre_handler)
        else:
            obj.c_record = None
    m.kprobes.optimizer.refresh_c_hits()

"""Which of the shell's probes record their hits in C (kprobes/chits.py, tracing/_hit.c).

A kprobe whose handler is the shell's own trace handler (`kprobe FUNC`, a kprobe_events
`p:` line) records in C at a jump-optimized address when nothing at its hit needs
Python: no `commands`, its map lines (`@m[...] = count() on N`) keyed and
fed by its arguments, comm, pid or cpu (updated through cmaps.h), no stack wanted (`set trace-stack on`, a stacktrace trigger), and its fetch args and filter
have a C program (tracing/cfetch.py says why not otherwise).  A kprobe_events `r:` line's
return events record in C at the kretprobe booster on the same terms, map lines included
(chits.CReturns), and its entry takes its instance in C at a jump-optimized address
(chits.CHits).  Uprobes, jprobes and handler files stay in
Python.  `set trace-hits python` sends every hit through Python (KprobeEngine.c_hits).

The choice is made again before every run (refresh), so that `commands`, maps, `explain`
or a new handler take effect at the next hit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..kprobes.chits import MAP_COMM, MAP_CPU, MAP_NONE, MAP_PID, MAX_KEY_PARTS, CRecord, register_id
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
    if up.kind not in ("k", "r") or not isinstance(up.c_program, bytes):
        return up.c_program if isinstance(up.c_program, str) else "not the shell's trace handler"
    if up.commands:
        return "it has commands"
    maps = map_lines(session, up)
    if isinstance(maps, str):
        return maps
    stacks = session.stacks
    if stacks.all_events or up.event in stacks.events or "emit_trace" in vars(session):
        return "a stack is recorded with its events"
    if not up.enabled:
        return "disabled"
    return None


_BUILTIN_SOURCES = {"comm": MAP_COMM, "pid": MAP_PID, "cpu": MAP_CPU}


def map_lines(session: "Session", up: "UserProbe") -> tuple | str:
    """The map lines on up as CRecord.maps has them, or why they update in Python."""
    args = {name: i for i, name in enumerate(up.spec.get("types", {}))}
    lines = []
    for agg in session.aggregations.get(up.number, ()):
        bmap = session.maps.maps.get(agg.name)
        if bmap is None or bmap.kind != agg.func or tuple(bmap.params) != tuple(agg.params):
            return f"map {agg.name} is not {agg.func}() now"
        if len(agg.keys) > MAX_KEY_PARTS:
            return f"map {agg.name} has more than {MAX_KEY_PARTS} key parts"
        sources = []
        for name in agg.keys + ((agg.value,) if agg.value else ()):
            src = args.get(name, _BUILTIN_SOURCES.get(name))
            if src is None:
                return f"map field {name} is not fetched in C"
            sources.append(src)
        value = sources.pop() if agg.value else MAP_NONE
        lines.append((bmap, bmap.handle, agg, tuple(sources), value))
    return tuple(lines)


def refresh(session: "Session") -> None:
    """Set each of the shell's kprobes' c_record (None: the Python path), then have the
    optimizer take them in (before every run)."""
    m = session.machine
    trace = session.trace
    for up in session.probes.values():
        obj = up.obj
        if not hasattr(obj, "c_record"):
            continue
        if python_reason(session, up) is None:
            # how the ring renders the records (the line a Python hit would print)
            is_return = up.kind == "r"
            event_id = trace.describe(up.event, is_return, up.kind, up.number, up.silent, up.spec.get("types", {}))
            obj.c_record = CRecord(event_id, trace.ring.handle, up.c_program,
                                   obj.handler if is_return else obj.pre_handler, map_lines(session, up), trace.ring)
        else:
            obj.c_record = None
    m.kprobes.optimizer.refresh_c_hits()
    m.kprobes.kretprobes.c_returns.refresh()

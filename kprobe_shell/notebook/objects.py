"""The Python API's objects in a notebook: a Machine, its probes, maps and trace drawn as
the shell's views are.

`%load_ext kprobe_shell` registers these with IPython's HTML formatter, so the objects
of `from kprobe_shell import Machine, Kprobe ...` display as tables and chains without
changing their classes.  stack(machine) and instances(machine) give the two pictures of a
machine driven from Python.
"""
from __future__ import annotations

import io
from html import escape
from types import SimpleNamespace

from ..shell import views
from ..shell.output import Output
from . import html
from .view import View


def _as_session(machine) -> SimpleNamespace:
    """What the views read from a shell session, for a machine driven from Python."""
    return SimpleNamespace(machine=machine, out=Output(io.StringIO(), color=False), probes={})


def stack(machine, count: int = 16) -> View:
    session = _as_session(machine)
    lines, _data = views.render_stack(session, count)
    return View("\n".join(lines), html.stack_html(session, count))


def instances(machine) -> View:
    session = _as_session(machine)
    lines, _data = views.render_instance_table(session)
    return View("\n".join(lines), html.instances_html(session))


def machine_html(machine) -> str:
    task = machine.tasks.current()
    head = (f"{escape(machine.image.path)}: rip {escape(machine.symbols.format(machine.rip))} "
            f"(0x{machine.rip:x}), {machine.time_ns} instructions, task "
            f"{escape(task.label) if task else '-'}")
    session = _as_session(machine)
    parts = [html.fragment(f'<div class="head">{head}</div>')]
    if any(machine.kprobes.kretprobes.kretprobe_inst_table):
        parts.append(html.instances_html(session))
    parts.append(html.stack_html(session, 8))
    return "".join(parts)


def _probe_rows(p) -> list[tuple[str, str]]:
    kp = getattr(p, "kp", p)
    where = kp.symbol_name or "?"
    if getattr(kp, "offset", 0):
        where += f"+{kp.offset:#x}"
    rows = [("probe", type(p).__name__), ("at", f"{where} (0x{kp.addr or 0:x})"),
            ("registered", "yes" if kp.registered else "no"), ("hits", str(kp.hits)), ("nmissed", str(p.nmissed))]
    if kp.registered:
        rows.append(("mode", kp.mode))
    if hasattr(p, "maxactive"):
        rows.append(("maxactive", f"{p.maxactive}: {len(p.used_instances)} used, {len(p.free_instances)} free"))
        rows.append(("returns handled", str(p.hits)))
    if hasattr(p, "entry_label"):
        rows.append(("handler", p.entry_label))
    return rows


def probe_html(p) -> str:
    rows = [[escape(k), escape(v)] for k, v in _probe_rows(p)]
    return html.fragment(html.table(["", ""], rows))


def map_html(bmap) -> str:
    return html.maps_html([bmap.as_json()])


def trace_html(buffer) -> str:
    return html.trace_html(buffer.events)


def register_formatters(ipython) -> None:
    from ..api import Jprobe, Kprobe, Kretprobe, Machine
    from ..tracing.maps import BpfMap
    from ..tracing.trace import TraceBuffer

    formatter = ipython.display_formatter.formatters["text/html"]
    formatter.for_type(Machine, machine_html)
    for cls in (Kprobe, Jprobe, Kretprobe):
        formatter.for_type(cls, probe_html)
    formatter.for_type(BpfMap, map_html)
    formatter.for_type(TraceBuffer, trace_html)

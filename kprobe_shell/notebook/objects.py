"""The Python API's objects in a notebook: a Machine, its probes, their instances, maps and
the trace drawn as the shell's views are.

The classes inherit kprobe_shell.display.Displayed, whose `_repr_html_` and
`_repr_pretty_` come here (html_of, text_of): any Jupyter front end draws them, with or
without `%load_ext kprobe_shell`, whose formatters only reuse those methods.
stack(machine) and instances(machine) give the two pictures of a machine driven from Python.
"""
from __future__ import annotations

import io
import os
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


def _machine_head(machine) -> str:
    task = machine.tasks.current()
    return (f"{os.path.basename(machine.image.path)}: rip {machine.symbols.format(machine.rip)} (0x{machine.rip:x}), "
            f"{machine.time_ns} instructions, task {task.label if task else '-'}")


def machine_html(machine) -> str:
    session = _as_session(machine)
    parts = [html.fragment(f'<div class="head">{escape(_machine_head(machine))}</div>')]
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


def probe_text(p) -> str:
    return "\n".join(f"{k:<16} {v}" for k, v in _probe_rows(p))


def instance_html(ri) -> str:
    """One kretprobe_instance as the instance table draws it: a card of its chain."""
    rp = ri.rp
    if rp is None or rp.manager is None:
        return html.text_html(repr(ri))
    session = _as_session(rp.manager.machine)
    node = {"probe": rp.number, "index": ri.index, "task": ri.task, "ret_addr": ri.ret_addr,
            "stack_slot": ri.stack_slot}
    return html.fragment(html.instance_card(session, node, {rp.number: rp.symbol_name or f"0x{rp.addr:x}"}))


def map_html(bmap) -> str:
    return html.maps_html([bmap.as_json()])


def trace_html(buffer) -> str:
    return html.trace_html(buffer.events)


#: A buffer's text shows its last lines, as its HTML does.
TRACE_TEXT_LINES = 500


def trace_text(buffer) -> str:
    lines = buffer.lines()
    if not lines:
        return "The trace is empty."
    if len(lines) > TRACE_TEXT_LINES:
        return "\n".join([f"(the last {TRACE_TEXT_LINES} of {len(lines)} events)", *lines[-TRACE_TEXT_LINES:]])
    return "\n".join(lines)


def _views():
    """(class, html, text) for each displayed class of the API."""
    from ..api import Jprobe, Kprobe, Kretprobe, KretprobeInstance, Machine
    from ..tracing.maps import BpfMap
    from ..tracing.trace import TraceBuffer

    return ((Machine, machine_html, _machine_head), (Kprobe, probe_html, probe_text),
            (Jprobe, probe_html, probe_text), (Kretprobe, probe_html, probe_text),
            (KretprobeInstance, instance_html, repr), (BpfMap, map_html, lambda m: m.text().rstrip("\n")),
            (TraceBuffer, trace_html, trace_text))


def html_of(obj) -> str:
    for cls, draw, _text in _views():
        if isinstance(obj, cls):
            return draw(obj)
    return html.text_html(repr(obj))


def text_of(obj) -> str:
    for cls, _draw, text in _views():
        if isinstance(obj, cls):
            return text(obj)
    return repr(obj)


def register_formatters(ipython) -> None:
    """IPython's HTML formatter, told in so many words what it would find by itself."""
    formatter = ipython.display_formatter.formatters["text/html"]
    for cls, _draw, _text in _views():
        formatter.for_type(cls, cls._repr_html_)

"""A trace as a timeline: tasks against virtual time.

One row per task (comm-pid).  A return line is paired with the latest unpaired entry line
of the same task and function (a probe at FUNC+0x0), newest first as calls nest, and the
pair is drawn as a bar from the call to the return; nested calls sit lower in the row.
Every other hit is a tick.  A return whose entry is not in the trace (a kretprobe alone
traces only returns) is a tick with a bar cap, so nothing in the trace is left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import drawsvg as draw

from .style import COLORS, FONT_SIZE, LINE, label, new_drawing, text_width, title

#: The most events one timeline draws (the latest ones): past that a slide is a smear and
#: the SVG grows by megabytes.  `trace clear` before the part to show narrows it down.
MAX_EVENTS = 5000
PALETTE = ("#1565c0", "#c2185b", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e63", "#455a64")
ROW = 34
PLOT_W = 760


@dataclass
class Span:
    task: str
    func: str
    start: int
    end: int
    depth: int


def _entry_function(where: str) -> str | None:
    """'do_sys_open+0x0/0xba' -> 'do_sys_open' (an entry); other offsets are not entries."""
    name, plus, rest = where.partition("+")
    return name if plus and rest.startswith("0x0/") else None


def pair_events(events) -> tuple[list[Span], list]:
    """(spans, lone hits): returns paired with their entries, the rest as they are."""
    open_calls: dict[tuple[str, str], list] = {}
    spans, paired = [], set()
    for ev in events:
        task = f"{ev.comm}-{ev.pid}"
        if ev.kind == "r":
            func = ev.where.rpartition(" <- ")[2]
            stack = open_calls.get((task, func))
            if stack:
                entry, depth = stack.pop()
                paired.update((id(entry), id(ev)))
                spans.append(Span(task, func, entry.time_ns, ev.time_ns, depth))
            continue
        func = _entry_function(ev.where)
        if func is not None:
            depth = sum(len(s) for (t, _f), s in open_calls.items() if t == task)
            open_calls.setdefault((task, func), []).append((ev, depth))
    return spans, [ev for ev in events if id(ev) not in paired]


def _ticks(t0: int, t1: int) -> list[int]:
    """Round tick positions (1, 2 or 5 times a power of ten nanoseconds), about six of them."""
    span = max(t1 - t0, 1)
    step = 1
    while span / step > 6:
        for mult in (2, 5, 10):
            if span / (step * mult) <= 6:
                step *= mult
                break
        else:
            step *= 10
    first = -(-t0 // step) * step
    return list(range(first, t1 + 1, step))


def timeline_svg(events) -> str:
    events = list(events)
    total = len(events)
    events = events[-MAX_EVENTS:]
    spans, lone = pair_events(events)
    tasks = sorted({f"{ev.comm}-{ev.pid}" for ev in events}, key=lambda t: (int(t.rpartition("-")[2]), t))
    funcs = sorted({s.func for s in spans} | {ev.event for ev in lone})
    color = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(funcs)}
    t0, t1 = min(ev.time_ns for ev in events), max(ev.time_ns for ev in events)
    x0 = 24 + max(text_width(t) for t in tasks)
    scale = PLOT_W / max(t1 - t0, 1)
    row_y = {t: 50 + i * ROW for i, t in enumerate(tasks)}
    legend_rows = -(-len(funcs) // 3)
    height = 50 + len(tasks) * ROW + 50 + legend_rows * LINE + 24
    d = new_drawing(x0 + PLOT_W + 30, height)
    shown = f"the last {len(events)} of {total} events" if total > len(events) else f"{total} event(s)"
    title(d, f"Trace timeline: {shown}, {len(tasks)} task(s), virtual time (1 instruction = 1 ns)")

    def x(t: int) -> float:
        return round(x0 + (t - t0) * scale, 1)

    for t, y in row_y.items():
        label(d, t, x0 - 10, y + ROW / 2 + 4, anchor="end")
        d.append(draw.Line(x0, y + ROW - 2, x0 + PLOT_W, y + ROW - 2, stroke="#e0e0e0"))
    for s in spans:
        y = row_y[s.task] + 4 + min(s.depth, 4) * 4
        d.append(draw.Rectangle(x(s.start), y, max(x(s.end) - x(s.start), 2), 12, fill=color[s.func],
                                fill_opacity=0.75, stroke=color[s.func]))
    for ev in lone:
        y = row_y[f"{ev.comm}-{ev.pid}"]
        d.append(draw.Line(x(ev.time_ns), y + 2, x(ev.time_ns), y + ROW - 6, stroke=color[ev.event], stroke_width=2))
        if ev.kind == "r":
            d.append(draw.Line(x(ev.time_ns) - 4, y + 2, x(ev.time_ns), y + 2, stroke=color[ev.event], stroke_width=2))
    _axis(d, x, t0, t1, 50 + len(tasks) * ROW, x0)
    _legend(d, funcs, color, spans, 50 + len(tasks) * ROW + 46)
    return d.as_svg()


def _axis(d, x, t0: int, t1: int, y: float, x0: float) -> None:
    d.append(draw.Line(x0, y, x0 + PLOT_W, y, stroke=COLORS["ink"]))
    for t in _ticks(t0, t1):
        d.append(draw.Line(x(t), y, x(t), y + 5, stroke=COLORS["ink"]))
        secs, ns = divmod(t, 1_000_000_000)
        label(d, f"{secs}.{ns:09d}", x(t), y + 18, anchor="middle", size=FONT_SIZE - 2, color=COLORS["dim"])
    label(d, "seconds of virtual time", x0 + PLOT_W, y + 34, anchor="end", size=FONT_SIZE - 2, color=COLORS["dim"])


def _legend(d, funcs: list[str], color: dict, spans: list[Span], y: float) -> None:
    bars = {s.func for s in spans}
    for i, f in enumerate(funcs):
        lx, ly = 24 + (i % 3) * 290, y + (i // 3) * LINE
        if f in bars:
            d.append(draw.Rectangle(lx, ly - 10, 22, 10, fill=color[f], fill_opacity=0.75))
            text = f"{f}: call to return"
        else:
            d.append(draw.Line(lx + 10, ly - 12, lx + 10, ly + 2, stroke=color[f], stroke_width=2))
            text = f"{f}: hit"
        label(d, text, lx + 30, ly, size=FONT_SIZE - 1)

"""HTML for notebooks: the shell's views as tables, chains and bars.

Each function takes the same facts the text views print (the commands' JSON-able data,
or views.* for a machine) and returns an HTML fragment.  A fragment carries its own
<style>, scoped by the `kps` class, and its element ids carry a per-fragment prefix, so
two outputs of one notebook never collide (a hijacked stack slot links to the instance
card of the same fragment).
"""
from __future__ import annotations

import itertools
from html import escape

from ..kprobes.core import KPROBE_TABLE_SIZE
from ..shell import views

STYLE = """<style>
.kps {font-family: DejaVu Sans Mono, Menlo, Consolas, monospace; font-size: 12px; color: #202020}
.kps table {border-collapse: collapse; margin: 4px 0}
.kps th {text-align: left; border-bottom: 1px solid #909090; padding: 2px 8px}
.kps td {padding: 1px 8px; vertical-align: top; white-space: pre}
.kps .head {font-weight: bold; margin: 4px 0}
.kps .dim {color: #707070}
.kps .planted {background: #fde4ee; color: #c2185b; font-weight: bold}
.kps .return {color: #2e7d32}
.kps .mark {color: #ef6c00; font-weight: bold}
.kps .changed {background: #fff3c4}
.kps .chain {display: flex; align-items: center; margin: 4px 0; overflow-x: auto}
.kps .bucket {border: 2px solid #1565c0; background: #e3eefb; padding: 6px; min-width: 40px; text-align: center}
.kps .node {border: 1px solid #c2185b; background: #fde4ee; padding: 4px 8px; margin-left: 4px; flex: none; white-space: nowrap}
.kps .arrow {color: #1565c0; padding: 0 4px}
.kps .bar {display: inline-block; height: 10px; background: #1565c0; vertical-align: middle}
.kps a {color: inherit}
</style>"""

_ids = itertools.count(1)


def fragment(body: str) -> str:
    return f'{STYLE}<div class="kps">{body}</div>'


def table(header: list[str], rows: list[list[str]], row_class: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _head(text: str) -> str:
    return f'<div class="head">{escape(text)}</div>'


# ---------------------------------------------------------------------- probes
def probes_html(data: list[dict]) -> str:
    if not data:
        return fragment('<span class="dim">No probes or breakpoints.</span>')
    rows = [[str(p["number"]), p["type"], f"0x{p['addr']:016x}", escape(p["what"]), "y" if p["enabled"] else "n",
             str(p["hits"]), str(p["nmissed"]), escape(p["mode"]), escape(p["details"])] for p in data]
    classes = ["planted" if p["nmissed"] else "" for p in data]
    return fragment(table(["Num", "Type", "Address", "What", "Enb", "Hits", "Missed", "Mode", "Details"],
                           rows, classes))


# ---------------------------------------------------------------------- kretprobe_inst_table
def instance_card(session, node: dict, names: dict, anchor: str | None = None) -> str:
    m = session.machine
    task = m.tasks.read_task(node["task"])
    who = task.label if task else f"task 0x{node['task']:x}"
    ret = ("kretprobe_trampoline" if m.kprobes.kretprobes.is_trampoline(node["ret_addr"])
           else m.symbols.format(node["ret_addr"], with_size=False))
    ident = f' id="{anchor}"' if anchor else ""
    number = "?" if node["probe"] is None else node["probe"]  # a probe registered from Python has none
    return (f'<div class="node"{ident}><b>#{node["index"]} probe {number} '
            f'({escape(names.get(node["probe"], "?"))})</b><br>task {escape(who)}<br>'
            f'<span class="return">ret_addr {escape(ret)}</span><br>slot 0x{node["stack_slot"]:x}</div>')


def _probe_names(session) -> dict:
    return {rp.number: rp.symbol_name or f"0x{rp.addr:x}" for rp in session.machine.kprobes.kretprobes.kretprobes}


def instances_html(session, prefix: str | None = None) -> str:
    """kretprobe_inst_table: every non-empty bucket as its chain, empty runs as ranges."""
    lines, data = views.render_instance_table(session)
    prefix = prefix or f"kps{next(_ids)}"
    names = _probe_names(session)
    total = sum(len(b["instances"]) for b in data["buckets"])
    parts = [_head(f"kretprobe_inst_table: {KPROBE_TABLE_SIZE} buckets indexed by hash_ptr(task); "
                   f"{total} instance(s) in flight in {len(data['buckets'])} bucket(s)")]
    for bucket in data["buckets"]:
        cards = "".join('<span class="arrow">&rarr;</span>'
                        + instance_card(session, n, names, f"{prefix}-ri-{n['probe']}-{n['index']}")
                        for n in bucket["instances"])
        parts.append(f'<div class="chain"><div class="bucket">[{bucket["bucket"]}]</div>{cards}'
                     f'<span class="arrow">&rarr;</span><span class="dim">NULL</span></div>')
    parts.extend(f'<div class="dim">{escape(line.strip())}</div>' for line in lines if line.strip().startswith("empty:"))
    for pool in data["probes"]:
        parts.append(f'<div class="dim">pool of probe {pool["probe"]} ({escape(names.get(pool["probe"], "?"))}): '
                     f'maxactive {pool["maxactive"]}, {pool["used"]} used, {pool["free"]} free, '
                     f'nmissed {pool["nmissed"]}</div>')
    return fragment("".join(parts))


# ---------------------------------------------------------------------- the stack
def stack_html(session, count: int = 16) -> str:
    """The slots from rsp up; a hijacked return address links to its instance's card."""
    m = session.machine
    prefix = f"kps{next(_ids)}"
    slots = views.stack_slots(m, count)
    rsp = m.reg("rsp")
    task = m.tasks.current()
    rows, classes, cards = [], [], []
    names = _probe_names(session)
    for s in slots:
        text = escape(s.text)
        if s.kind == "trampoline" and s.instances:
            links = ", ".join(f'<a href="#{prefix}-ri-{_number(ri)}-{ri.index}">instance #{ri.index}</a>'
                              for ri in s.instances)
            text = f"kretprobe_trampoline: hijacked return address, {links}"
            cards.extend(s.instances)
        mark = f'<span class="mark">&larr; {",".join(s.marks)}</span>' if s.marks else ""
        rows.append([f"rsp{s.addr - rsp:+#06x}", f"0x{s.addr:016x}", f"0x{s.value:016x}", mark, text])
        classes.append({"trampoline": "planted", "return": "return", "saved-rbp": "dim"}.get(s.kind, ""))
    who = f"{task.label} (task_struct 0x{task.address:x})" if task else "no current task"
    body = _head(f"Stack of {who}: rsp 0x{rsp:x}, rbp 0x{m.reg('rbp'):x}; {len(slots)} slot(s) of 8 bytes")
    body += table(["offset", "address", "value", "", "what it is"], rows, classes)
    if cards:
        nodes = [{"probe": _number(ri), "index": ri.index, "task": ri.task, "ret_addr": ri.ret_addr,
                  "stack_slot": ri.stack_slot} for ri in cards]
        body += _head("The instances that hold the real return addresses")
        body += '<div class="chain">' + "".join(
            instance_card(session, n, names, f"{prefix}-ri-{n['probe']}-{n['index']}") for n in nodes) + "</div>"
    return fragment(body)


def _number(ri):
    return ri.rp.number if ri.rp is not None else None


# ---------------------------------------------------------------------- slots
def slot_html(session, data: list[dict], text: str) -> str:
    """Per probe: the original bytes, what memory holds now (int3, or an optimized probe's
    jmp), the copy in the slot; then the shell's slot view."""
    from ..figures.planted import planted_at

    rows = []
    for info in data:
        original, copy = bytes.fromhex(info["original"]), bytes.fromhex(info["copy"])
        planted = planted_at(session.machine, info["addr"], original, info["mode"])
        now = " ".join(f"{b:02x}" for b in planted.raw)
        rows.append([str(info["probe"]), f"0x{info['addr']:x}", " ".join(f"{b:02x}" for b in original),
                     f'<span class="planted">{now}</span> {escape(planted.what)}' if planted.what != "original"
                     else f"{now} (not armed)",
                     f"0x{info['slot']:x}", " ".join(f"{b:02x}" for b in copy), escape(info["mode"])])
    grid = table(["probe", "address", "original", "in memory", "slot", "copy", "mode"], rows)
    return fragment(grid + f"<pre>{escape(text)}</pre>")


# ---------------------------------------------------------------------- trace and maps
def trace_html(events, limit: int = 500) -> str:
    events = list(events)
    shown = events[-limit:]
    rows = []
    for ev in shown:
        secs, ns = divmod(ev.time_ns, 1_000_000_000)
        rows.append([f"{secs}.{ns:09d}", escape(f"{ev.comm}-{ev.pid}"), f"{ev.cpu:03d}", escape(ev.event),
                     escape(ev.where), escape(ev.args.strip())])
    classes = ["return" if ev.kind == "r" else "" for ev in shown]
    note = (f'<div class="dim">the last {limit} of {len(events)} events</div>' if len(events) > limit else "")
    if not rows:
        return fragment('<span class="dim">The trace is empty.</span>')
    return fragment(note + table(["time", "task", "cpu", "event", "where", "fields"], rows, classes))


def _bar(n: int, top: int, width: int = 240) -> str:
    px = round(width * n / top) if top else 0
    return f'<span class="bar" style="width: {px}px"></span>'


def maps_html(data: list[dict]) -> str:
    """bpftrace maps: scalar maps as labelled bars, histograms as bars per bucket."""
    if not data:
        return fragment('<span class="dim">No map has entries yet.</span>')
    parts = []
    for bmap in data:
        parts.append(_head(f"{bmap['name']} ({bmap['kind']})"))
        for entry in bmap["entries"]:
            key = ", ".join(str(k) for k in entry["key"])
            name = f"{bmap['name']}[{key}]" if key else bmap["name"]
            if "buckets" in entry:
                top = max(b["count"] for b in entry["buckets"]) or 1
                rows = [[escape(_bucket(b)), str(b["count"]), _bar(b["count"], top)] for b in entry["buckets"]]
                parts.append(f"<div>{escape(name)}:</div>" + table(["bucket", "count", ""], rows))
        scalars = [e for e in bmap["entries"] if "buckets" not in e]
        if scalars:
            values = [e.get("value", e.get("total", 0)) for e in scalars]
            top = max((abs(v) for v in values), default=1) or 1
            rows = [[escape(", ".join(str(k) for k in e["key"]) or bmap["name"]), str(v), _bar(abs(v), top)]
                    for e, v in zip(scalars, values)]
            parts.append(table(["key", "value", ""], rows))
    return fragment("".join(parts))


def _bucket(b: dict) -> str:
    """A bucket's range as bpftrace labels it, from the inclusive [min, max] of the JSON."""
    lo, hi = b["min"], b["max"]
    if lo is None:
        return f"(..., {hi + 1})"
    if hi is None:
        return f"[{lo}, ...)"
    return f"[{lo}]" if lo == hi else f"[{lo}, {hi + 1})"


def text_html(text: str) -> str:
    return fragment(f"<pre>{escape(text)}</pre>")

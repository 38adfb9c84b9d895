"""kretprobe_inst_table as a slide: its buckets, each non-empty one the hlist it is.

Drawn from views.render_instance_table's description, the one `instances --table` prints:
buckets in index order, empty runs folded into one row, each used bucket's chain of
kretprobe_instances from the head to NULL, then each kretprobe's pool of instances.
"""
from __future__ import annotations

from ..kprobes.core import KPROBE_TABLE_SIZE
from ..shell import views
from .style import COLORS, FONT_SIZE, LINE, arrow, box, label, new_drawing, text_width, title

TOP = 52
GAP = 34        # between two nodes of a chain: room for the arrow
CELL_W = 78     # the bucket cell


def _rows(data: dict) -> list[tuple[str, object]]:
    """('used', bucket) and ('empty', (first, last)) in index order."""
    used = {b["bucket"]: b for b in data["buckets"]}
    rows, start = [], None
    for index in range(KPROBE_TABLE_SIZE + 1):
        if index < KPROBE_TABLE_SIZE and index not in used:
            start = index if start is None else start
            continue
        if start is not None:
            rows.append(("empty", (start, index - 1)))
            start = None
        if index < KPROBE_TABLE_SIZE:
            rows.append(("used", used[index]))
    return rows


def _node_lines(machine, names: dict, node: dict) -> list[str]:
    probe = node["probe"]
    func = names.get(probe, "?")
    task = machine.tasks.read_task(node["task"])
    who = task.label if task else f"task 0x{node['task']:x}"
    ret = ("kretprobe_trampoline" if machine.kprobes.kretprobes.is_trampoline(node["ret_addr"])
           else machine.symbols.format(node["ret_addr"], with_size=False))
    return [f"#{node['index']} probe {probe if probe is not None else '?'} ({func})", f"task {who}",
            f"ret_addr {ret}", f"slot 0x{node['stack_slot']:x}"]


def instances_svg(session) -> str:
    machine = session.machine
    _lines, data = views.render_instance_table(session)
    names = {rp.number: rp.symbol_name or f"0x{rp.addr:x}" for rp in machine.kprobes.kretprobes.kretprobes}
    rows = _rows(data)
    texts = {id(n): _node_lines(machine, names, n) for b in data["buckets"] for n in b["instances"]}
    node_w = max([text_width(t) for lines in texts.values() for t in lines] + [120]) + 20
    node_h = 4 * LINE + 10
    longest = max([len(b["instances"]) for b in data["buckets"]] + [0])
    x_chain = 16 + CELL_W + GAP
    width = max(x_chain + longest * (node_w + GAP) + 70, 640)
    heights = [node_h + 12 if kind == "used" else 28 for kind, _ in rows]
    pools = data["probes"]
    height = TOP + sum(heights) + 24 + LINE * (len(pools) + 1)
    d = new_drawing(width, height)
    total = sum(len(b["instances"]) for b in data["buckets"])
    title(d, f"kretprobe_inst_table: {KPROBE_TABLE_SIZE} buckets by hash_ptr(task); "
             f"{total} instance(s) in {len(data['buckets'])} bucket(s)")
    y = TOP
    for (kind, row), h in zip(rows, heights):
        if kind == "empty":
            first, last = row
            name = f"[{first}]" if first == last else f"[{first}-{last}]"
            box(d, 16, y, CELL_W, 22, fill="white", stroke=COLORS["edge"])
            label(d, name, 16 + CELL_W / 2, y + 16, anchor="middle", color=COLORS["dim"])
            label(d, "empty", x_chain, y + 16, color=COLORS["dim"], size=FONT_SIZE - 1)
        else:
            _draw_chain(d, row, texts, y, x_chain, node_w, node_h)
        y += h
    y += 20
    for pool in pools:
        func = names.get(pool["probe"], "?")
        label(d, f"pool of probe {pool['probe']} ({func}): maxactive {pool['maxactive']}, {pool['used']} used, "
                 f"{pool['free']} free, nmissed {pool['nmissed']}", 16, y, color=COLORS["dim"])
        y += LINE
    return d.as_svg()


def _draw_chain(d, bucket: dict, texts: dict, y: float, x_chain: float, node_w: float, node_h: float) -> None:
    box(d, 16, y, CELL_W, node_h, fill=COLORS["copy-bg"], stroke=COLORS["copy"], width=2)
    label(d, f"[{bucket['bucket']}]", 16 + CELL_W / 2, y + node_h / 2 + 5, anchor="middle", bold=True)
    mid = y + node_h / 2
    x_prev = 16 + CELL_W
    for i, node in enumerate(bucket["instances"]):
        x = x_chain + i * (node_w + GAP)
        arrow(d, [(x_prev, mid), (x - 2, mid)], COLORS["copy"])
        box(d, x, y, node_w, node_h, fill=COLORS["planted-bg"], stroke=COLORS["planted"])
        for j, line in enumerate(texts[id(node)]):
            label(d, line, x + 10, y + 18 + j * LINE, bold=j == 0,
                  color=COLORS["return"] if line.startswith("ret_addr") else COLORS["ink"])
        x_prev = x + node_w
    arrow(d, [(x_prev, mid), (x_prev + GAP - 8, mid)], COLORS["copy"])
    label(d, "NULL", x_prev + GAP + 2, mid + 5, color=COLORS["dim"])

"""The stack as a slide: 8-byte slots, hijacked return addresses linked to their instances.

Drawn from views.stack_slots, the same classification `stack` prints: the highest address
at the top as textbooks draw a stack that grows down, rsp and rbp marked, each slot that a
kretprobe overwrote with kretprobe_trampoline in magenta with an arrow to the
kretprobe_instance that holds its real return address.
"""
from __future__ import annotations

from ..shell import views
from .style import COLORS, FONT_SIZE, LINE, arrow, box, fit, label, new_drawing, text_width, title

ROW = 24
TOP = 64
DESC_CHARS = 58

_FILL = {"trampoline": ("planted-bg", "planted"), "return": ("return-bg", "return")}


def _describe(slot) -> str:
    if slot.kind == "trampoline":
        return "kretprobe_trampoline: hijacked return address"
    return slot.text


def _instance_card(machine, ri) -> list[str]:
    probe = f"probe {ri.rp.number}" if ri.rp is not None and ri.rp.number is not None else "a probe"
    func = ri.rp.symbol_name if ri.rp is not None and ri.rp.symbol_name else "?"
    task = machine.tasks.read_task(ri.task)
    who = task.label if task else f"task 0x{ri.task:x}"
    real = machine.symbols.format(ri.ret_addr, with_size=False)
    return [f"instance #{ri.index} of {probe} ({func})", f"task {who}", f"real return: {real}"]


def stack_svg(session, count: int = 16) -> str:
    machine = session.machine
    slots = views.stack_slots(machine, count)
    rsp, rbp = machine.reg("rsp"), machine.reg("rbp")
    task = machine.tasks.current()
    who = task.label if task else "no current task"
    cards = [(s, ri) for s in slots for ri in s.instances]
    x_off = 16
    x_val = x_off + text_width("rsp+0x1ff8") + 16 + text_width("<- rsp,rbp") + 8
    val_w = text_width("0x" + "0" * 16) + 16
    x_desc = x_val + val_w + 12
    x_card = x_desc + text_width("x" * DESC_CHARS) + 40
    card_w = max([text_width(line) for _s, ri in cards for line in _instance_card(machine, ri)] + [0]) + 28
    width = x_card + card_w + 16 if cards else x_card
    height = TOP + ROW * max(len(slots), 1) + 40
    card_h = 3 * LINE + 10
    height = max(height, TOP + len(cards) * (card_h + 8) + 40)
    d = new_drawing(width, height)
    title(d, f"Stack of {who}: rsp 0x{rsp:x}, rbp 0x{rbp:x} ({len(slots)} slots of 8 bytes)")
    label(d, "higher addresses", x_val, TOP - 14, size=FONT_SIZE - 2, color=COLORS["dim"])
    row_y = {}
    for i, s in enumerate(reversed(slots)):
        y = TOP + i * ROW
        row_y[s.addr] = y
        fill, edge = _FILL.get(s.kind, ("box", "edge"))
        box(d, x_val, y, val_w, ROW - 3, fill=COLORS[fill], stroke=COLORS[edge], width=2 if s.kind == "trampoline" else 1)
        label(d, f"rsp{s.addr - rsp:+#x}", x_off, y + 15, color=COLORS["dim"])
        label(d, f"0x{s.value:016x}", x_val + 8, y + 15,
              color=COLORS["planted"] if s.kind == "trampoline" else COLORS["ink"], bold=s.kind == "trampoline")
        text = fit(_describe(s), DESC_CHARS)
        if text:
            label(d, text, x_desc, y + 15, color=COLORS[edge] if s.kind in _FILL else COLORS["ink"])
        if s.marks:
            mark = "<- " + ",".join(s.marks)
            label(d, mark, x_val - 8, y + 15, anchor="end", color=COLORS["marker"], bold=True)
    if slots:
        label(d, f"rsp = 0x{rsp:x}; the stack grows down", x_val, TOP + len(slots) * ROW + 14,
              size=FONT_SIZE - 2, color=COLORS["dim"])
    _draw_cards(d, machine, cards, row_y, x_desc, x_card, card_w, card_h)
    return d.as_svg()


def _draw_cards(d, machine, cards, row_y, x_desc, x_card, card_w, card_h) -> None:
    """Each instance beside the slot it hijacked, pushed down so that none overlaps."""
    next_free = TOP
    for s, ri in sorted(cards, key=lambda c: row_y[c[0].addr]):
        y = max(row_y[s.addr] - 8, next_free)
        next_free = y + card_h + 8
        box(d, x_card, y, card_w, card_h, fill=COLORS["planted-bg"], stroke=COLORS["planted"])
        for i, line in enumerate(_instance_card(machine, ri)):
            label(d, line, x_card + 10, y + 18 + i * LINE,
                  color=COLORS["return"] if line.startswith("real return") else COLORS["ink"])
        start_x = x_desc + text_width(_describe(s)) + 6
        ry = row_y[s.addr] + 11
        arrow(d, [(start_x, ry), (x_card - 14, ry), (x_card - 14, y + card_h / 2), (x_card - 2, y + card_h / 2)],
              COLORS["planted"])

"""One probe's instruction slot as a slide: where execution goes when the probe is hit.

Top to bottom: the probed address as memory holds it now (the planted int3, or the jmp of
an optimized probe, in magenta), the instruction it replaced, the copy in the insn slot
(a re-targeted RIP-relative displacement in amber) with the jmp back after it, and the
instruction the CPU runs next.  The facts come from views.render_slot, as `slot` prints them.
"""
from __future__ import annotations

from ..kprobes.x86 import decode_at
from ..shell import views
from .planted import planted_at
from .style import CHAR_WIDTH, COLORS, FONT_SIZE, LINE, arrow, box, label, new_drawing, title

X = 16
BOX_W = 760
STEP = 3 * CHAR_WIDTH  # one byte "xx " in the byte columns


def _bytes(d, raw: bytes, x: float, y: float, colors: dict[int, str]) -> float:
    """Hex bytes, each in its own colour; returns where the text ends."""
    for i, b in enumerate(raw):
        label(d, f"{b:02x}", x + i * STEP, y, color=colors.get(i, COLORS["ink"]), bold=i in colors)
    return x + len(raw) * STEP


def _next_step(data: dict, fixup: str) -> str:
    if data["mode"] == "optimized":
        return "the detour runs the handler, then the copies and their jmp back"
    if data["mode"] == "boost":
        return "boosted: the copy runs, then the jmp back, no debug trap"
    return f"single-step under TF, debug trap, resume_execution '{fixup}'"


def slot_svg(session, up) -> str:
    m = session.machine
    _lines, data = views.render_slot(session, up)
    _kp, entry = views.probe_entry(session, up)
    addr, slot = data["addr"], data["slot"]
    original, copy, jmp = (bytes.fromhex(data[k]) for k in ("original", "copy", "jmp"))
    n = len(original)
    disp = {}
    if "old_disp" in data:
        lo = entry.ainsn.rip_disp_offset
        disp = {i: COLORS["changed"] for i in range(lo, lo + 4)}
    planted = planted_at(m, addr, original, data["mode"])
    now = planted.raw
    nxt = data.get("branch_target", addr + n)
    height = 48 + 4 * (2 * LINE + 12) + 3 * 34 + (2 * LINE + 12 if disp else 0) + 16
    d = new_drawing(BOX_W + 2 * X, height)
    title(d, f"Probe {up.number} at {m.symbols.format(addr, with_size=False)}: insn slot {data['index']} "
             f"at 0x{slot:x}, mode {data['mode']}")
    y = 48

    def panel(heading: str, fill: str, edge: str) -> float:
        box(d, X, y, BOX_W, 2 * LINE + 12, fill=COLORS[fill], stroke=COLORS[edge], width=2)
        label(d, heading, X + 10, y + 18, color=COLORS["dim"], size=FONT_SIZE - 1)
        return y + 18 + LINE

    def link(text: str, color: str) -> None:
        nonlocal y
        y += 2 * LINE + 12
        arrow(d, [(X + 40, y + 2), (X + 40, y + 30)], color)
        label(d, text, X + 56, y + 21, color=color)
        y += 34

    base = panel(f"memory at 0x{addr:x} ({m.symbols.format(addr, with_size=False)}) now", "planted-bg", "planted")
    end = _bytes(d, now, X + 10, base, {i: COLORS["planted"] for i in range(len(now))})
    label(d, planted.text, max(end, X + 10 + 6 * STEP) + 8, base, color=COLORS["planted"])
    link("the probe's handlers run (kprobe_handler: pre_handler)", COLORS["planted"])
    base = panel("the instruction it replaced (kept in the kprobe)", "box", "edge")
    end = _bytes(d, original, X + 10, base, disp)
    label(d, _insn_text(original, addr), max(end, X + 10 + 6 * STEP) + 8, base)
    link(f"copied to insn slot {data['index']} by arch_prepare_kprobe", COLORS["copy"])
    base = panel(f"insn slot at 0x{slot:x}: the copy, then the jmp back", "copy-bg", "copy")
    end = _bytes(d, copy, X + 10, base, disp)
    end = _bytes(d, jmp, end + STEP, base, {})
    label(d, f"{_insn_text(copy, slot)}; jmp 0x{addr + n:x}", end + 8, base, color=COLORS["copy"])
    link(_next_step(data, entry.ainsn.fixup_kind()), COLORS["return"])
    base = panel("where execution goes next", "return-bg", "return")
    label(d, f"0x{nxt:x} <{m.symbols.format(nxt, with_size=False)}>", X + 10, base, color=COLORS["return"], bold=True)
    if disp:
        y += 2 * LINE + 30
        label(d, f"RIP-relative displacement {data['old_disp']:+#x} from 0x{addr + n:x} became "
                 f"{data['new_disp']:+#x} from 0x{slot + n:x}:", X, y, color=COLORS["dim"])
        label(d, f"both reach 0x{data['target']:x} <{m.symbols.format(data['target'], with_size=False)}>",
              X, y + LINE, color=COLORS["dim"])
    return d.as_svg()


def _insn_text(raw: bytes, at: int) -> str:
    insn = decode_at(raw, at)
    return insn.text if insn is not None else "?"


"""What every figure shares: the palette, the font, text measurement, boxes and arrows.

Figures are drawn with drawsvg (a maintained SVG library with a plain element model) and
come out as SVG text.  They use one monospace font so that a label's width is known from
its length, and the same colours as the terminal's roles (planted = magenta, return
address = green), so a slide and a shell session read alike.
"""
from __future__ import annotations

import drawsvg as draw

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
FONT_SIZE = 13
#: A monospace glyph is about 0.6 em wide; the figures size boxes by it.
CHAR_WIDTH = 0.6 * FONT_SIZE
LINE = 18  # one line of text, with its leading

COLORS = {
    "ink": "#202020",
    "dim": "#707070",
    "box": "#f4f4f4",
    "edge": "#909090",
    "planted": "#c2185b",      # int3, jmp, kretprobe_trampoline: what the probe wrote
    "planted-bg": "#fde4ee",
    "return": "#2e7d32",       # real return addresses
    "return-bg": "#e6f4e7",
    "copy": "#1565c0",         # the instruction's copy in its slot
    "copy-bg": "#e3eefb",
    "saved-rbp": "#8d6e63",
    "marker": "#ef6c00",       # rsp, rbp
    "changed": "#f9a825",      # a re-targeted displacement
}


def text_width(text: str, size: float = FONT_SIZE) -> float:
    return len(text) * 0.6 * size


def new_drawing(width: float, height: float) -> draw.Drawing:
    d = draw.Drawing(round(width), round(height), font_family=FONT)
    d.append(draw.Rectangle(0, 0, round(width), round(height), fill="white"))
    return d


def arrowhead(color: str) -> draw.Marker:
    """A filled triangle for line ends (drawsvg numbers its id when the drawing is written)."""
    marker = draw.Marker(-0.1, -0.5, 0.9, 0.5, scale=7, orient="auto")
    marker.append(draw.Lines(-0.1, -0.5, -0.1, 0.5, 0.9, 0, fill=color, close=True))
    return marker


def label(d, text: str, x: float, y: float, *, size: float = FONT_SIZE, color: str = COLORS["ink"],
          anchor: str = "start", bold: bool = False) -> None:
    """One line of text with its baseline at y."""
    extra = {"font_weight": "bold"} if bold else {}
    d.append(draw.Text(text, size, round(x, 1), round(y, 1), fill=color, text_anchor=anchor, **extra))


def box(d, x: float, y: float, w: float, h: float, *, fill: str = COLORS["box"], stroke: str = COLORS["edge"],
        width: float = 1.0) -> None:
    d.append(draw.Rectangle(round(x, 1), round(y, 1), round(w, 1), round(h, 1), fill=fill, stroke=stroke,
                            stroke_width=width, rx=3))


def arrow(d, points: list[tuple[float, float]], color: str, *, dashed: bool = False, width: float = 1.5) -> None:
    """A polyline ending in an arrowhead."""
    coords = [round(c, 1) for p in points for c in p]
    extra = {"stroke_dasharray": "5,4"} if dashed else {}
    d.append(draw.Lines(*coords, fill="none", stroke=color, stroke_width=width,
                        marker_end=arrowhead(color), **extra))


def title(d, text: str, x: float = 16, y: float = 26) -> None:
    label(d, text, x, y, size=FONT_SIZE + 2, bold=True)


def fit(text: str, chars: int) -> str:
    """text cut to chars characters (with an ellipsis) so it stays inside its box."""
    return text if len(text) <= chars else text[:max(chars - 1, 1)] + "\u2026"

"""SVG figures (stack, instances, slot, trace --svg FILE): what they draw, that they parse,
that real renderers draw them (not blank), and that the committed ones cannot drift.

The facts a figure must show are worked out here from the machine (the instances in
flight, hash_ptr's bucket, the original instruction's displacement), not read back from
the figure code.  Rendering: CairoSVG (Cairo's renderer; in the notebook extra) always,
headless Chromium when it is installed (.ci/run installs Debian's chromium).
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("drawsvg", reason="the notebook extra is not installed (pip install -e '.[notebook]')")

from capstone import CS_ARCH_X86, CS_MODE_64, Cs  # noqa: E402

from kprobe_shell import figures  # noqa: E402
from kprobe_shell.kprobes.core import hash_ptr  # noqa: E402
from kprobe_shell.shell.output import Output  # noqa: E402
from kprobe_shell.shell.registry import CommandError  # noqa: E402
from kprobe_shell.shell.session import Session  # noqa: E402
from kprobe_shell.tracing.trace import TraceEvent  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import make_figures  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
PLANTED = (0xC2, 0x18, 0x5B)


def new_session() -> Session:
    session = Session(output=Output(io.StringIO(), color=False))
    session.batch = True
    return session


@pytest.fixture(scope="module")
def at_recursion(kernel_path):
    """make_figures' session, stopped five calls deep in path_lookup_recursive."""
    session = new_session()
    for line in make_figures.COMMANDS.splitlines():
        if "--svg" in line:
            break
        session.execute(line)
    return session


def texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and float(root.get("width")) > 100 and float(root.get("height")) > 50
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_committed_figures_are_what_the_code_draws(kernel_path, tmp_path):
    drawn = make_figures.draw_figures(tmp_path)
    for path in drawn:
        committed = ROOT / "docs" / "figures" / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"docs/figures/{path.name} is stale: run python3 scripts/make_figures.py")


def test_the_readme_shows_a_committed_figure():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"!\[[^\]]*\]\((docs/figures/[\w.-]+\.svg)\)", readme)
    assert shown and all(Path(p).name in make_figures.FIGURES for p in shown)


def test_stack_figure_links_each_hijacked_slot_to_its_instance(at_recursion):
    m = at_recursion.machine
    task = m.tasks.current()
    in_flight = [ri for bucket in m.kprobes.kretprobes.kretprobe_inst_table for ri in bucket if ri.task == task.address]
    assert len(in_flight) == 5
    svg = figures.stack_svg(at_recursion, 24)
    words = texts(svg)
    assert words.count("kretprobe_trampoline: hijacked return address") == 5
    for ri in in_flight:
        assert f"instance #{ri.index} of probe 1 (path_lookup_recursive)" in words
        assert f"real return: {m.symbols.format(ri.ret_addr, with_size=False)}" in words
    arrows = [e for e in ET.fromstring(svg).iter() if e.get("marker-end")]
    assert len(arrows) == 5
    assert any(w.startswith("<- rsp") for w in words)
    assert figures.stack_svg(at_recursion, 24) == svg  # same state, same bytes


def test_instances_figure_draws_buckets_and_chains(at_recursion):
    m = at_recursion.machine
    table = m.kprobes.kretprobes.kretprobe_inst_table
    used = [b for b in range(len(table)) if table[b]]
    words = texts(figures.instances_svg(at_recursion))
    assert hash_ptr(m.tasks.current().address) in used
    for b in used:
        assert f"[{b}]" in words
        for ri in table[b]:
            assert any(w.startswith(f"#{ri.index} probe ") for w in words)
    assert words.count("NULL") == len(used)
    assert sum(1 for w in words if w == "empty") == len(used) + 1 - (0 in used) - (63 in used)


def test_slot_figure_shows_int3_copy_and_the_retargeted_displacement(at_recursion):
    m = at_recursion.machine
    up = at_recursion.probes[2]
    original = m.kprobes.original_bytes(up.addr, 16)
    cs = Cs(CS_ARCH_X86, CS_MODE_64)
    cs.detail = True
    insn = next(cs.disasm(original, up.addr, 1))
    disp = int.from_bytes(bytes(insn.bytes)[insn.disp_offset:insn.disp_offset + 4], "little", signed=True)
    target = up.addr + insn.size + disp
    words = texts(figures.slot_svg(at_recursion, up))
    assert f"int3 planted over {original[0]:02x}: the CPU traps to do_int3" in words
    assert any(w.startswith(f"both reach 0x{target:x} ") for w in words)
    assert f"0x{up.addr + insn.size:x} <kprobe_target+{insn.size:#x}>" in words  # where execution goes next


def test_slot_figure_of_an_optimized_probe_shows_the_jmp(kernel_path):
    session = new_session()
    for line in ("set kprobe-mode optimize", "kprobe do_fork", "run 100000"):
        session.execute(line)
    words = texts(figures.slot_svg(session, session.probes[1]))
    assert any(w.startswith("jmp rel32 to the detour at 0x") for w in words)
    assert "the detour runs the handler, then the copies and their jmp back" in words


def _ev(t: int, pid: int, kind: str, where: str, event: str) -> TraceEvent:
    return TraceEvent(time_ns=t, comm=f"t{pid}", pid=pid, cpu=0, event=event, where=where, kind=kind)


def test_timeline_pairs_calls_with_returns_and_leaves_the_rest_as_ticks():
    from kprobe_shell.figures.timeline import pair_events

    events = [_ev(10, 1, "k", "f+0x0/0x20", "p_f"), _ev(20, 1, "k", "f+0x0/0x20", "p_f"),
              _ev(25, 2, "k", "g+0x4/0x20", "p_g"), _ev(30, 1, "r", "f+0x9/0x20 <- f", "r_f"),
              _ev(40, 1, "r", "main+0x9/0x20 <- f", "r_f"), _ev(50, 2, "r", "main+0x1/0x9 <- h", "r_h")]
    spans, lone = pair_events(events)
    assert [(s.start, s.end, s.depth) for s in spans] == [(20, 30, 1), (10, 40, 0)]  # innermost returns first
    assert [ev.time_ns for ev in lone] == [25, 50]
    svg = figures.timeline_svg(events)
    root = ET.fromstring(svg)
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("fill-opacity")]
    assert len(bars) == 2 + 1  # two calls, and the legend's bar
    assert {"t1-1", "t2-2"} <= set(texts(svg))


def test_a_long_trace_draws_its_latest_events():
    from kprobe_shell.figures.timeline import MAX_EVENTS

    events = [_ev(10 * i, 1 + i % 3, "k", "g+0x4/0x20", "p_g") for i in range(MAX_EVENTS + 7)]
    words = texts(figures.timeline_svg(events))
    assert f"Trace timeline: the last {MAX_EVENTS} of {MAX_EVENTS + 7} events, 3 task(s), " \
           "virtual time (1 instruction = 1 ns)" in words


@pytest.mark.parametrize("line, message", [
    ("stack --svg", "--svg needs a FILE (usage: stack [N] [--svg FILE])"),
    ("stack 4 --svg /nonexistent-dir/x.svg", "cannot write /nonexistent-dir/x.svg: No such file or directory"),
    ("stack 0 --svg x.svg", "the slot count must be between 1 and 1024"),
    ("slot --svg x.svg", "--svg draws one probe's slot: slot N --svg FILE"),
    ("instances --svg x.svg --table", "unexpected '--table' (usage: instances --svg FILE)"),
    ("trace --svg", "usage: trace --svg FILE"),
    ("trace --svg x.svg", "the trace is empty: there is nothing to draw (run the guest with probes first)"),
])
def test_bad_svg_options_are_refused_and_write_nothing(kernel_path, tmp_path, monkeypatch, line, message):
    monkeypatch.chdir(tmp_path)
    session = new_session()
    session.execute("kprobe do_fork")
    session.execute("kprobe do_exit")
    with pytest.raises(CommandError) as err:
        session.execute(line)
    assert str(err.value) == message
    assert list(tmp_path.iterdir()) == []


def test_without_drawsvg_the_error_says_what_to_install(kernel_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "drawsvg", None)
    with pytest.raises(CommandError, match=r"pip install 'kprobe-shell\[notebook\]'"):
        new_session().execute(f"stack --svg {tmp_path / 'x.svg'}")


def test_the_commands_write_the_file_and_say_so(kernel_path, tmp_path):
    out = io.StringIO()
    session = Session(output=Output(out, color=False))
    session.execute("kprobe do_fork")
    session.execute(f"slot --svg {tmp_path / 's.svg'}")
    assert out.getvalue().splitlines()[-1].startswith(f"Saved the slot of probe 1 to {tmp_path / 's.svg'} (SVG, ")
    texts((tmp_path / "s.svg").read_text())


# ---------------------------------------------------------------------- real renderers
def _not_blank(image, name: str) -> None:
    """Not blank: ink covers part of the picture, and the figure's highlight colour is there."""
    rgb = image.convert("RGB")
    gray = rgb.convert("L").histogram()
    inked = sum(gray[:200]) / sum(gray)
    assert inked > 0.01, f"{name}: nothing drawn ({inked:.4f} of the pixels)"
    colors = rgb.getcolors(rgb.width * rgb.height)
    near = sum(n for n, c in colors if all(abs(a - b) < 40 for a, b in zip(c, PLANTED)))
    assert near > 20, f"{name}: no magenta (the planted int3 / trampoline colour) in the picture"


FIGURE_FILES = [ROOT / "docs" / "figures" / name for name in make_figures.FIGURES]


@pytest.mark.parametrize("path", FIGURE_FILES, ids=lambda p: p.name)
def test_cairosvg_renders_the_figures(path):
    cairosvg = pytest.importorskip("cairosvg", reason="cairosvg (the notebook extra) is not installed")
    from PIL import Image

    png = cairosvg.svg2png(bytestring=path.read_bytes())
    _not_blank(Image.open(io.BytesIO(png)), path.name)


@pytest.mark.slow
def test_headless_chromium_renders_the_figures(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium); CairoSVG rendered them above")
    from PIL import Image

    sizes = [(int(float(ET.parse(p).getroot().get("width"))), int(float(ET.parse(p).getroot().get("height"))))
             for p in FIGURE_FILES]
    page = "".join(f'<img src="{p.as_uri()}" style="display:block;margin:0" width="{w}" height="{h}">'
                   for p, (w, h) in zip(FIGURE_FILES, sizes))
    (tmp_path / "page.html").write_text(f"<html><body style='margin:0'>{page}</body></html>")
    shot = tmp_path / "shot.png"
    width, height = max(w for w, _ in sizes), sum(h for _, h in sizes)
    subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--allow-file-access-from-files", f"--screenshot={shot}", f"--window-size={width},{height}",
                    (tmp_path / "page.html").as_uri()], capture_output=True, timeout=60, check=True)
    image = Image.open(shot)
    top = 0
    for path, (w, h) in zip(FIGURE_FILES, sizes):
        _not_blank(image.crop((0, top, w, top + h)), path.name)
        top += h

#!/usr/bin/env python3
"""Draw the figures of docs/figures/ (the README shows one) with the shell's --svg options.

    python3 scripts/make_figures.py [OUTDIR]      # default: docs/figures

One fixed session on the bundled kernel: return probes stopped five calls deep in
path_lookup_recursive (stack, instances), the kprobe on kprobe_target with its
RIP-relative operand (slot), and the trace of the whole run (timeline).  The virtual
clock makes every run draw the same bytes; tests/teaching/test_figures.py redraws them
and compares, so the committed files cannot drift from the code.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = """\
set kprobe-mode boost
kretprobe path_lookup_recursive
kprobe kprobe_target
p do_sys_open
r do_sys_open ret=$retval
p do_fork
tbreak path_lookup_recursive+0x86
run
stack 24 --svg {out}/stack.svg
instances --svg {out}/instances.svg
slot 2 --svg {out}/slot.svg
continue
trace --svg {out}/timeline.svg
"""

FIGURES = ("stack.svg", "instances.svg", "slot.svg", "timeline.svg")


def draw_figures(out: Path) -> list[Path]:
    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session

    out.mkdir(parents=True, exist_ok=True)
    session = Session(output=Output(io.StringIO(), color=False))
    session.batch = True
    for line in COMMANDS.format(out=out).splitlines():
        session.execute(line)
    return [out / name for name in FIGURES]


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "figures"
    for path in draw_figures(out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

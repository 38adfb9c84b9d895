"""kprobe-shell in Jupyter: `%load_ext kprobe_shell`, then `%kps CMD` or a `%%kps` cell.

    %load_ext kprobe_shell
    %kps kretprobe do_sys_open
    %kps run 400000
    %kps instances            # kretprobe_inst_table drawn as buckets and chains

One machine per kernel, kept across cells (`reset` gives a fresh one).  The views come
back with HTML (see html.py); the Python API's objects (Machine, Kprobe, Kretprobe,
Jprobe, their instances, maps, the trace buffer) display the same way in any notebook,
extension loaded or not (kprobe_shell/display.py).
`stack(machine)` and `instances(machine)` draw a machine driven from Python, and
`current_shell().session.machine` is the machine the magics drive.
Needs the `notebook` extra: pip install 'kprobe-shell[notebook]'.
"""
from __future__ import annotations

from .magics import NotebookShell, current_shell
from .objects import instances, register_formatters, stack
from .view import View

__all__ = ["NotebookShell", "View", "current_shell", "instances", "load_ipython_extension", "stack"]


def load_ipython_extension(ipython) -> None:
    from .magics import register_magics

    register_magics(ipython)
    register_formatters(ipython)

"""What the README and gdb's conventions promise, checked: `silent` breakpoints, one
warning for a handler that keeps failing, JSON lines that are all JSON, SMP trace lines
in time order, listings that show an event's filter."""
from __future__ import annotations

import io
import json
import re
import textwrap

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session


def _session(image=None, **kw):
    out = io.StringIO()
    return Session(image, output=Output(out, color=False), **kw), out


def test_silent_breakpoint_commands_do_not_announce_the_stop(tmp_path):
    script = tmp_path / "bp.kps"
    script.write_text("break do_sys_open\ncommands\n  silent\n  echo quiet stop\n  continue\nend\nrun\n")
    s, out = _session()
    s.execute(f"source {script}")
    text = out.getvalue()
    assert text.count("quiet stop") == 12
    assert "Breakpoint 1," not in text


def test_a_breakpoint_without_silent_still_announces_each_stop(tmp_path):
    script = tmp_path / "bp.kps"
    script.write_text("break do_sys_open\ncommands\n  echo loud stop\n  continue\nend\nrun\n")
    s, out = _session()
    s.execute(f"source {script}")
    assert out.getvalue().count("Breakpoint 1, do_sys_open") == 12


def test_a_handler_that_keeps_failing_is_reported_once_with_a_count(tmp_path):
    path = tmp_path / "fails.py"
    path.write_text(textwrap.dedent("""
        from kprobe_shell.handlers import kprobe
        @kprobe("do_sys_open")
        def on_open(p, regs):
            raise ValueError("always")
    """))
    s, out = _session()
    s.execute(f"handlers {path}")
    s.execute("run")
    text = out.getvalue()
    assert text.count("pre_handler raised ValueError: always") == 1
    assert re.search(r"warning: probe 1 \(on_open\): pre_handler failed the same way 11 more time\(s\) "
                     r"\[faults=12, handler-error=continue\]", text)

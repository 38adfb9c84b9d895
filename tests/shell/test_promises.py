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

"""Failing handlers seen from the shell: the handler-timeout setting, the warning line
that names the probe and its fault count, and Ctrl-C ending a looping handler at the
interactive prompt (on a real pseudo-terminal)."""
from __future__ import annotations

import io
import os
import re
import sys
import textwrap
import time

import pytest

from kprobe_shell import Kprobe
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session, UserProbe


def loop_forever(p, regs):
    while True:
        pass


def test_handler_timeout_setting_reaches_the_engine_and_survives_reset(user_image):
    out = io.StringIO()
    s = Session(user_image, output=Output(out, color=False))
    assert s.machine.kprobes.guard.timeout == 5.0
    s.execute("set handler-timeout 0.05")
    assert s.machine.kprobes.guard.timeout == 0.05
    s.execute("reset")
    assert s.machine.kprobes.guard.timeout == 0.05
    s.execute("show handler-timeout")
    assert re.search(r"handler-timeout\s+0.05\s", out.getvalue())
    s.execute("set handler-timeout off")
    assert s.machine.kprobes.guard.timeout is None


def test_looping_handler_is_reported_with_its_probe_and_fault_count(user_image):
    out = io.StringIO()
    s = Session(user_image, output=Output(out, color=False))
    s.execute("kprobe leaf")  # probe 1: the shell's own handler
    s.execute("set handler-timeout 0.05")
    s.execute("set handler-error disable")
    kp = Kprobe("walk", pre_handler=loop_forever)
    s.machine.register_kprobe(kp)
    s.add_user_probe(UserProbe(number=0, kind="k", location="walk", addr=kp.addr, obj=kp, event="looper"))
    s.execute("run")
    text = out.getvalue()
    assert ("warning: probe 2 (looper): pre_handler ran past the handler-timeout and was stopped "
            "(HandlerTimeout)") in text
    assert "[faults=1, handler-error=disable]" in text
    assert "user image done" in text
    out.truncate(0)
    s.execute("probes")
    row = [line for line in out.getvalue().splitlines() if line.startswith("2 ")][0]
    assert " n " in row and "faults=1" in row  # disabled by the policy, and shown so


SCRIPT = textwrap.dedent("""
    import sys
    from kprobe_shell import Kprobe
    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.repl import run_repl
    from kprobe_shell.shell.session import Session, UserProbe

    def loops(p, regs):
        while True:
            pass

    s = Session(sys.argv[1], output=Output(sys.stdout, color=False),
                settings={"handler-timeout": None})
    kp = s.machine.register_kprobe(Kprobe("leaf", pre_handler=loops))
    s.add_user_probe(UserProbe(number=0, kind="k", location="leaf", addr=kp.addr, obj=kp, event="looper"))
    sys.exit(run_repl(s, {"prompt-style": "plain"}))
""")


def test_ctrl_c_ends_a_looping_handler_at_the_prompt(user_image, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    script = tmp_path / "looper.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TERM="xterm", XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"))
    child = pexpect.spawn(sys.executable, [str(script), user_image], env=env, encoding="utf-8",
                          codec_errors="replace", timeout=20, dimensions=(40, 160))

    def expect(pattern):
        while child.expect([re.escape(pattern), re.escape("\x1b[6n")]) == 1:
            child.send("\x1b[1;1R")  # answer the cursor-position request as a terminal does

    expect("(kprobe)")
    child.send("run\r")
    time.sleep(1.0)  # the handler is looping now (no timeout is set)
    child.sendintr()
    expect("was interrupted by Ctrl-C")
    expect("[interrupted at")
    expect("(kprobe)")
    child.send("probes\r")
    expect("faults=1")
    expect("(kprobe)")
    child.send("regs\r")
    expect("rip")
    expect("(kprobe)")
    child.sendcontrol("d")
    child.expect(pexpect.EOF, timeout=10)
    child.close()
    assert child.exitstatus == 0


def test_delete_in_a_probes_own_commands_is_an_error_not_a_crash(user_image, tmp_path):
    out = io.StringIO()
    s = Session(user_image, output=Output(out, color=False))
    script = tmp_path / "selfdelete.kps"
    script.write_text("kprobe leaf\ncommands 1\n  delete 1\nend\nrun\n")
    s.execute(f"source {script}")
    text = out.getvalue()
    assert "in commands of probe 1: unregister_kprobe cannot be called from a probe handler" in text
    assert "user image done" in text and 1 in s.probes
    s.execute("delete 1")  # outside the hit it works
    assert not s.probes

"""Handler files and probe commands that misbehave: whatever a handler raises, however it
loops, whatever its `commands` block asks, the guest stays consistent and the shell says
what happened in one line (no traceback, no hang, no stuck probe)."""
from __future__ import annotations

import inspect
import io
import os
import re
import sys
import textwrap
import threading
import time

import pytest

from kprobe_shell.kprobes import guard
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session


def _session(image=None):
    out = io.StringIO()
    return Session(image, output=Output(out, color=False)), out


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


BASE_RAISER = """
    from kprobe_shell.handlers import kprobe
    class Odd(BaseException):
        pass
    @kprobe("do_sys_open")
    def on_open(p, regs):
        raise {what}
"""


@pytest.mark.parametrize("what", ["BaseException('boom')", "Odd('boom')", "GeneratorExit()"])
@pytest.mark.parametrize("mode", ["auto", "single-step"])
def test_handler_raising_a_base_exception_is_the_handlers_fault(tmp_path, run_shell, what, mode):
    path = _write(tmp_path, "raiser.py", BASE_RAISER.format(what=what))
    proc = run_shell("--batch", "-ex", f"set kprobe-mode {mode}", "-ex", f"handlers {path}", "-ex", "run",
                     "-ex", "probes")
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    assert "internal error" not in text
    assert f"raised {what.split('(')[0]}: " in text
    assert "raiser.py:7" in text  # the user's line, not the tool's
    assert "[guest halted" in text  # the guest went on and finished
    row = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("1 ")][0]
    assert "missed=0" in row.replace(" ", "") or " 0 " in row  # no hit was counted missed


def test_handler_file_raising_a_base_exception_at_load_is_one_line(tmp_path, run_shell):
    path = _write(tmp_path, "top.py", "raise BaseException('top')\n")
    proc = run_shell("--batch", "-ex", f"handlers {path}", "-ex", "probes")
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    assert f"{path}:1: BaseException: top" in text
    assert proc.returncode == 1


# ---------------------------------------------------------------------- the watchdog wins (issue: loops)
def test_handler_file_looping_at_load_is_stopped_by_the_timeout(tmp_path, run_shell):
    path = _write(tmp_path, "loadloop.py", """
        from kprobe_shell.handlers import kprobe
        while True:
            pass
    """)
    proc = run_shell("--batch", "-ex", "set handler-timeout 0.2", "-ex", f"handlers {path}", "-ex", "probes")
    text = proc.stdout + proc.stderr
    assert re.search(re.escape(path) + r":[34]: loading the file ran past the handler-timeout and was stopped "
                     r"\(HandlerTimeout\); nothing changed", text)
    assert proc.returncode == 1 and "Traceback" not in text


SWALLOWERS = {
    "except-base": """
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    """,
    "bare-except-sleep": """
        import time
        while True:
            try:
                time.sleep(0.01)
            except:
                continue
    """,
    "nested": """
        import time
        def again():
            try:
                time.sleep(0.01)
            except BaseException:
                again()
        while True:
            try:
                again()
            except BaseException:
                pass
    """,
}


@pytest.mark.skipif(guard._insist is None, reason="kprobes/_insist.c is not built "
                    "(pip install -e ., or python3 setup.py build_ext --inplace)")
@pytest.mark.parametrize("body", sorted(SWALLOWERS))
def test_handler_swallowing_the_timeout_is_stopped_all_the_same(tmp_path, body):
    code = "from kprobe_shell.handlers import kprobe\n@kprobe('do_sys_open')\ndef on_open(p, regs):\n"
    code += textwrap.indent(textwrap.dedent(SWALLOWERS[body]), "    ")
    path = tmp_path / "swallow.py"
    path.write_text(code)
    s, out = _session()
    s.execute("set handler-timeout 0.2")
    s.execute("set handler-error disable")
    s.execute(f"handlers {path}")
    s.execute("run")
    text = out.getvalue()
    assert "ran past the handler-timeout and was stopped (HandlerTimeout)" in text
    assert "[guest halted" in text


@pytest.mark.parametrize("body", ["while True:\n    pass\n", SWALLOWERS["bare-except-sleep"]])
def test_handler_file_looping_at_load_is_stopped_by_ctrl_c_at_the_prompt(tmp_path, body):
    pexpect = pytest.importorskip("pexpect")
    path = tmp_path / "loadloop.py"
    path.write_text("from kprobe_shell.handlers import kprobe\n" + textwrap.dedent(body))
    env = dict(os.environ, TERM="xterm", XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"))
    child = pexpect.spawn(sys.executable, ["-m", "kprobe_shell"], env=env, encoding="utf-8",
                          codec_errors="replace", timeout=20, dimensions=(40, 160))

    def expect(pattern):
        while child.expect([re.escape(pattern), re.escape("\x1b[6n")]) == 1:
            child.send("\x1b[1;1R")

    expect("(kprobe)")
    child.send("set handler-timeout off\r")
    expect("(kprobe)")
    child.send(f"handlers {path}\r")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # answer the prompt's last cursor-position request
        if child.expect([re.escape("\x1b[6n"), pexpect.TIMEOUT], timeout=0.2) == 0:
            child.send("\x1b[1;1R")
    child.sendintr()
    expect("loading the file was interrupted by Ctrl-C; nothing changed")
    expect("(kprobe)")
    child.sendcontrol("d")
    child.expect(pexpect.EOF, timeout=10)
    child.close()
    assert child.exitstatus == 0


# ---------------------------------------------------------------------- what a probe's commands may do
@pytest.mark.parametrize("body, refused", [
    ("try run", "'run' cannot run inside a probe's commands"),
    ("try continue 5", "'continue' cannot run inside a probe's commands"),
    ("source {inner}", "'run' cannot run inside a probe's commands"),
    ("reset", "'reset' cannot run inside a probe's commands (it would replace the machine"),
    ("load {image}", "'load' cannot run inside a probe's commands (it would replace the machine"),
    ("try reset", "'reset' cannot run inside a probe's commands"),
])
def test_probe_commands_cannot_run_the_guest_or_replace_the_machine(tmp_path, body, refused):
    from kprobe_shell.images import BUNDLED_KERNEL, bundled_image_path

    inner = tmp_path / "inner.kps"
    inner.write_text("echo inner\nrun\n")
    script = tmp_path / "outer.kps"
    script.write_text("kprobe do_sys_open\ncommands 1\n  " + body.format(inner=inner, image=bundled_image_path(BUNDLED_KERNEL))
                      + "\nend\nrun\n")
    s, out = _session()
    machine = s.machine
    done = threading.Event()
    worker = threading.Thread(target=lambda: (s.execute(f"source {script}"), done.set()), daemon=True)
    worker.start()
    assert done.wait(60), "deadlocked"
    text = out.getvalue()
    assert refused in text
    assert s.machine is machine  # the machine was not swapped mid-run
    assert "[guest halted" in text


def test_breakpoint_commands_ending_in_continue_take_any_number_of_stops(tmp_path):
    """gdb's idiom (commands ... continue end) must not nest a Python call per stop: with
    the stack kept short, 147 stops of `schedule` would overflow a recursive version."""
    script = tmp_path / "bp.kps"
    script.write_text("break schedule\ncommands\n  silent\n  echo stop\n  continue\nend\nrun\n")
    s, out = _session()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 140)
    try:
        s.execute(f"source {script}")
    finally:
        sys.setrecursionlimit(limit)
    text = out.getvalue()
    assert "RecursionError" not in text
    assert text.count("stop\n") == 147 and s.probes[1].hits == 147
    assert "[guest halted" in text


# ---------------------------------------------------------------------- a refused reload changes nothing
V1 = """
    from kprobe_shell.handlers import kprobe, kretprobe
    @kprobe("do_sys_open")
    def on_open(p, regs):
        pass
    @kretprobe("do_sys_open")
    def on_ret(ri, regs):
        pass
"""


def _state(s):
    rows = [(up.number, up.event, up.obj.hits, up.obj.nmissed) for up in s.probes.sorted()]
    flight = [(ri.rp.number if ri.rp else None, ri.ret_addr)
              for bucket in s.machine.kprobes.kretprobes.kretprobe_inst_table for ri in bucket]
    return s.next_number, rows, flight


@pytest.mark.parametrize("v2", [
    V1.replace('@kretprobe("do_sys_open")', '@kretprobe("do_sys_open", maxactive=100000)'),
])
def test_a_refused_reload_changes_nothing(tmp_path, v2):
    path = _write(tmp_path, "h.py", V1)
    s, out = _session()
    s.execute(f"handlers {path}")
    s.execute("run 300000")
    before = _state(s)
    assert before[2], "a return probe instance is in flight"
    _write(tmp_path, "h.py", v2)
    with pytest.raises(CommandError):
        s.execute(f"handlers {path}")
    assert _state(s) == before


def test_reloading_handlers_in_a_probes_commands_is_refused_and_changes_nothing(tmp_path):
    path = _write(tmp_path, "h.py", V1)
    s, out = _session()
    s.execute(f"handlers {path}")
    objects = [up.obj for up in s.probes.sorted()]
    s.probes[1].commands = [f"handlers {path}"]
    s.execute("run")
    text = out.getvalue()
    assert f"in commands of probe 1: {path} cannot be loaded again inside a probe's commands" in text
    assert "[guest halted" in text
    assert s.next_number == 3 and [up.obj for up in s.probes.sorted()] == objects
    assert s.probes[1].obj.hits == 12


# ---------------------------------------------------------------------- reports say what happened
def test_a_return_handler_setting_ret_addr_to_zero_is_reported_as_such(tmp_path):
    path = _write(tmp_path, "zero.py", """
        from kprobe_shell.handlers import kretprobe
        @kretprobe("do_sys_open")
        def on_ret(ri, regs):
            ri.ret_addr = 0
    """)
    s, out = _session()
    s.execute(f"handlers {path}")
    s.execute("run")
    text = out.getvalue()
    assert "[bug: " in text
    assert "a return handler of probe 1 set ri.ret_addr to 0" in text
    assert "flushed" not in text


def test_a_guest_jumping_into_the_trampoline_is_reported_as_such():
    s, out = _session()
    s.execute("kretprobe do_sys_open")
    s.execute("run 1000")
    m = s.machine
    m.set_reg("rip", m.kprobes.kretprobes.trampoline)
    s.execute("continue")
    text = out.getvalue()
    assert "[bug: " in text
    assert "jumped into kretprobe_trampoline" in text and "no probed function returned there" in text
    assert "flushed" not in text


def test_a_jprobe_handler_wanting_more_arguments_than_the_function_has_is_refused_at_load(tmp_path):
    path = _write(tmp_path, "jar.py", """
        from kprobe_shell.handlers import jprobe
        @jprobe("do_sys_open")
        def on_j(a, b, c, d, e, f, g, h, i, j):
            pass
    """)
    s, out = _session()
    with pytest.raises(CommandError) as err:
        s.execute(f"handlers {path}")
    assert str(err.value).startswith(f"{path}:3: on_j takes 10 arguments but do_sys_open has 4")
    assert "probe_handlers.py" not in str(err.value) and not s.probes

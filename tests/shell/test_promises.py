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


def test_listings_echo_an_events_filter():
    s, out = _session()
    s.execute('p:etc do_sys_open name=+0(%si):string if name ~ "/etc/*"')
    s.execute("probes")
    text = out.getvalue()
    assert '  p:kprobes/etc do_sys_open name=+0(%si):string if name ~ "/etc/*"\n' in text
    row = [line for line in text.splitlines() if line.startswith("1 ")][0]
    assert row.endswith('etc if name ~ "/etc/*"')


def _json_lines(stdout: str) -> list[dict]:
    objs = []
    for line in stdout.splitlines():
        obj = json.loads(line)  # every line a JSON object
        assert isinstance(obj, dict), line
        objs.append(obj)
    return objs


def _readme_opens(tmp_path):
    """opens.py and opens.kps, as README.md shows them."""
    readme = open(__file__.rsplit("/tests/", 1)[0] + "/README.md", encoding="utf-8").read()
    py = re.search(r"```python\n(# opens\.py\n.*?)```", readme, re.S).group(1)
    kps = re.search(r"\n\n(    handlers opens\.py\n(?:    .*\n)+)", readme).group(1)
    (tmp_path / "opens.py").write_text(py)
    (tmp_path / "opens.kps").write_text(textwrap.dedent(kps))
    return tmp_path / "opens.kps"


@pytest.mark.parametrize("script", ["demo-08", "readme-opens"])
def test_json_mode_writes_one_json_object_per_line(tmp_path, run_shell, script):
    root = __file__.rsplit("/tests/", 1)[0]
    if script == "demo-08":
        proc = run_shell("--batch", "--json", "-x", f"{root}/scripts/demos/08-smp-in-place.kps")
    else:
        path = _readme_opens(tmp_path)
        proc = _run_in(tmp_path, "--batch", "--json", "-x", str(path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    objs = _json_lines(proc.stdout)
    assert any(o.get("command", "").startswith("commands") for o in objs)


def _run_in(cwd, *args):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "kprobe_shell", *args], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ), timeout=120)


def test_json_probe_commands_are_results_of_their_own(tmp_path):
    script = tmp_path / "c.kps"
    script.write_text("kprobe do_sys_open\ncommands 1\n  echo at the hit\nend\nrun\n")
    proc = _run_in(tmp_path, "--batch", "--json", "-x", str(script))
    objs = _json_lines(proc.stdout)
    run = [o for o in objs if o.get("type") == "result" and o.get("command") == "run"][0]
    assert "at the hit" not in run["output"]
    echoes = [o for o in objs if o.get("type") == "result" and o.get("command") == "echo at the hit"]
    assert len(echoes) == 12 and echoes[0]["output"] == "at the hit"
    ack = [o for o in objs if o.get("type") == "result" and o.get("command") == "commands 1"][0]
    assert ack["output"] == "Commands for 1: 1 line(s)"


def test_smp_trace_show_and_save_merge_the_cpus_by_timestamp(tmp_path):
    s, out = _session(cpus=2)
    s.execute("kprobe schedule")
    s.execute("kprobe do_sys_open")
    s.execute("run")
    raw = [(e.time_ns, e.cpu) for e in s.trace.events]
    assert len({cpu for _t, cpu in raw}) == 2 and raw != sorted(raw), "the CPUs' events interleave out of order"
    out.truncate(0)
    out.seek(0)
    s.execute("trace show")
    s.execute(f"trace save {tmp_path / 'saved.txt'}")
    for text in (out.getvalue(), (tmp_path / "saved.txt").read_text()):
        times = [float(m) for m in re.findall(r"\] +(\d+\.\d{9}): ", text)]
        assert len(times) == len(raw) and times == sorted(times)


def _ticks_and_instructions(run_shell, *commands):
    args = ["--batch"]
    for c in commands:
        args += ["-ex", c]
    proc = run_shell(*args, "-ex", "run")
    ticks = re.search(r"^init: (\d+) ticks", proc.stdout, re.M).group(1)
    insns = re.search(r"^\[guest halted: .*; (\d+) instructions\]", proc.stdout, re.M).group(1)
    return ticks, insns


@pytest.mark.parametrize("mode", ["auto", "single-step"])
@pytest.mark.parametrize("probe", ["kprobe ip_queue_xmit", "kretprobe ip_queue_xmit", "jprobe ip_queue_xmit",
                                   "jprobe ip_queue_xmit jip_queue_xmit"])
def test_probes_never_move_a_tick(run_shell, probe, mode):
    """The guest-resident jprobe handler runs with IF clear (setjmp_pre_handler), so a tick
    due meanwhile waits; its instructions are not counted on the virtual clock, and the
    tick goes back to where it was at the trap, so the guest sees the unprobed timeline."""
    plain = _ticks_and_instructions(run_shell, f"set kprobe-mode {mode}")
    assert _ticks_and_instructions(run_shell, f"set kprobe-mode {mode}", probe) == plain

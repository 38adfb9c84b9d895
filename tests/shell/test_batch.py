"""The real shell in batch mode: scripts, -ex, stdin, errors with FILE:LINE, JSON, determinism."""
from __future__ import annotations

import json

import pytest

GOOD_SCRIPT = """\
# a probe, a return probe, a run
kprobe leaf
kretprobe walk
run
probes
"""


def test_ex_run_prints_console_and_exits_zero(user_image, tmp_path, run_shell):
    r = run_shell(user_image, "--batch", "-ex", "run", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "walk ok" in r.stdout
    assert "user image done" in r.stdout
    assert "[guest halted" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_script_is_byte_identical_twice(user_image, tmp_path, run_shell):
    script = tmp_path / "good.kps"
    script.write_text(GOOD_SCRIPT)
    a = run_shell(user_image, "--batch", "-x", str(script), tmp_home=str(tmp_path))
    b = run_shell(user_image, "--batch", "-x", str(script), tmp_home=str(tmp_path))
    assert a.returncode == 0, a.stdout + a.stderr
    assert a.stdout == b.stdout
    # walk(3) makes 4 walk calls and 4 leaf calls; _start calls it 6 times
    assert a.stdout.count("p_leaf_0: (leaf+0x0/") == 24
    assert a.stdout.count("r_walk_0: (") == 24
    assert "<- walk) ret=" in a.stdout


def test_mistake_on_line_3_stops_with_file_line(user_image, tmp_path, run_shell):
    script = tmp_path / "bad.kps"
    script.write_text("kprobe leaf\necho before\nkprobe no_such_function\necho never\nrun\n")
    r = run_shell(user_image, "--batch", "-x", str(script), tmp_home=str(tmp_path))
    assert r.returncode != 0
    assert f"{script}:3: no symbol 'no_such_function'" in r.stderr  # errors go to stderr, as gdb's
    assert "before" in r.stdout and "never" not in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_stdin_is_a_script_when_not_a_terminal(user_image, tmp_path, run_shell):
    r = run_shell(user_image, stdin="symbols walk\nbogus_cmd\n", tmp_home=str(tmp_path))
    assert "FUNC   walk" in r.stdout
    assert "<stdin>:2: unknown command 'bogus_cmd'" in r.stderr
    assert r.returncode == 1


def test_json_mode_gives_one_object_per_line(user_image, tmp_path, run_shell):
    r = run_shell(user_image, "--batch", "--json", "-ex", "kprobe leaf", "-ex", "run 300", "-ex", "probes",
                  tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = {o["type"] for o in objs}
    assert {"result", "trace", "stop"} <= kinds
    traces = [o for o in objs if o["type"] == "trace"]
    assert all(o["event"] == "p_leaf_0" and o["where"].startswith("leaf+0x0/") for o in traces)
    probes = [o for o in objs if o["type"] == "result" and o["command"] == "probes"][0]
    assert probes["data"][0]["hits"] == len(traces)


def test_plain_output_has_no_colour_codes(user_image, tmp_path, run_shell):
    r = run_shell(user_image, "--batch", "-ex", "kprobe leaf", "-ex", "disas leaf", "-ex", "regs",
                  tmp_home=str(tmp_path))
    assert "\x1b[" not in r.stdout
    # auto mode optimizes the probe on leaf's first instruction: its jmp is shown.
    assert "jmp planted (e9 over" in r.stdout or "int3 planted (cc over" in r.stdout


def test_bad_image_is_refused_cleanly(tmp_path, run_shell):
    bad = tmp_path / "junk.elf"
    bad.write_bytes(b"not an elf at all")
    r = run_shell(str(bad), "--batch", "-ex", "run", tmp_home=str(tmp_path))
    assert r.returncode == 2
    assert "not an ELF file" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_breakpoint_stops_and_continue_goes_on(user_image, tmp_path, run_shell):
    r = run_shell(user_image, "--batch", "-ex", "break leaf", "-ex", "run", "-ex", "bt", "-ex", "continue",
                  "-ex", "delete", "-ex", "continue", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("Breakpoint 1, leaf+0x0/") == 2
    assert "#1  " in r.stdout and "walk+" in r.stdout
    assert "user image done" in r.stdout


def test_info_registers_shows_the_named_ones_as_gdb_does(user_image, tmp_path, run_shell):
    r = run_shell(user_image, "--batch", "-ex", "break leaf", "-ex", "run", "-ex", "info registers rip $rsp",
                  "-ex", "regs", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    named = r.stdout.split("Breakpoint 1, leaf+0x0/")[1].splitlines()[1:3]
    assert [line.split()[0].lstrip("*") for line in named] == ["rip", "rsp"]
    assert "<leaf>" in named[0] or "<leaf+0x0>" in named[0]
    assert r.stdout.count("eflags") == 1  # only the full `regs` lists every register
    r = run_shell(user_image, "--batch", "-ex", "regs rip foo", tmp_home=str(tmp_path))
    assert r.returncode != 0
    assert "no register named 'foo'" in r.stdout + r.stderr


def test_errors_change_nothing(user_image, tmp_path, run_shell):
    # Without --batch an error does not end the run: every command gets its say.
    r = run_shell(user_image, "-ex", "kprobe leaf+1", "-ex", "kprobe 0x10", "-ex", "delete 7", "-ex", "probes",
                  stdin="", tmp_home=str(tmp_path))
    assert r.returncode == 0
    assert "not an instruction boundary (nearest: leaf+0x0, leaf+0x" in r.stderr
    assert "outside the image's text" in r.stderr
    assert "no probe or breakpoint number 7" in r.stderr
    assert "No probes or breakpoints." in r.stdout


def test_background_run_is_refused_in_scripts(user_image, tmp_path, run_shell):
    script = tmp_path / "bg.kps"
    script.write_text("echo one\ncontinue &\necho never\n")
    r = run_shell(user_image, "--batch", "-x", str(script))
    assert r.returncode != 0
    assert f"{script}:2: '&' runs the guest in the background" in r.stderr + r.stdout
    assert "never" not in r.stdout
    # `r &` is a run, not a return probe named '&'
    r = run_shell(user_image, "--batch", "-ex", "r &")
    assert "only makes sense at the interactive prompt" in r.stderr + r.stdout


def test_a_reader_that_goes_away_is_no_traceback(user_image, tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "kprobe_shell", user_image, "--batch", "-ex", "run", "-ex", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line is written
    _out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and err == b""
    assert proc.returncode == 141


def test_bad_config_file_settings_are_skipped_with_a_warning(user_image, tmp_path, run_shell):
    cfg = tmp_path / "config" / "kprobe-shell"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text("kprobe-mode = fast\ntimer-period = 5\nhandler-error = maybe\n"
                                "handler-timeout = 0.5\nhistory-size = -2\n")
    r = run_shell(user_image, "--batch", "-ex", "show", "-ex", "run", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "config:1: kprobe-mode is one of auto, single-step, boost, optimize; line ignored" in out
    assert "config:2: the timer period must be at least 100 instructions; line ignored" in out
    assert "config:3: handler-error is one of" in out
    assert "config:5: " in out and "history-size" in out
    assert "handler-timeout  0.5" in out and "user image done" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("value, message", [
    ("1000000000000000", "the timer period must be at most 1000000000000 instructions"),
    ("5", "the timer period must be at least 100 instructions"),
])
def test_timer_period_option_is_checked_as_the_setting_is(run_shell, value, message):
    proc = run_shell("--batch", "--timer-period", value, "-ex", "run 10")
    assert f"kprobe-shell: {message}" in proc.stdout + proc.stderr
    assert proc.returncode == 2


def test_batch_exits_non_zero_after_a_kernel_bug_and_says_so(run_shell, tmp_path):
    handler = tmp_path / "zero.py"
    handler.write_text("from kprobe_shell.handlers import kretprobe\n@kretprobe('do_sys_open')\n"
                       "def on_ret(ri, regs):\n    ri.ret_addr = 0\n")
    proc = run_shell("--batch", "-ex", f"handlers {handler}", "-ex", "run", "-ex", "probes")
    assert "[bug: kernel BUG at kretprobe_trampoline" in proc.stdout
    assert "kprobe-shell: the guest stopped on a kernel BUG" in proc.stdout + proc.stderr
    assert proc.returncode == 1


def test_batch_run_that_halts_normally_exits_zero(run_shell):
    proc = run_shell("--batch", "-ex", "kprobe do_sys_open", "-ex", "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_batch_load_that_drops_probes_exits_non_zero(run_shell, user_image):
    proc = run_shell("--batch", "-ex", "kprobe do_sys_open", "-ex", f"load {user_image}", "-ex", "probes")
    text = proc.stdout + proc.stderr
    assert "probe 1 (do_sys_open) dropped" in text
    assert "1 probe(s) could not be re-created on the new image" in text
    assert proc.returncode == 1

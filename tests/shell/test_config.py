"""The config file: settings, colours by role, and lines it cannot use named, not fatal."""
from __future__ import annotations

import io
import re

from kprobe_shell.shell.colors import translate
from kprobe_shell.shell.config import load_config
from kprobe_shell.shell.output import Output


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config"
    path.write_text(text)
    return str(path)


def test_settings_and_colours_are_read(tmp_path):
    cfg = load_config(write(tmp_path, "timer-period = 0x1000\nhistory-size = 50  # comment\nkprobe-mode = boost\n"
                                      "color = off\ncolor.trace = bright-blue bold\n"
                                      "color.toolbar.running = white on-green\n"))
    assert cfg["timer-period"] == 4096 and cfg["history-size"] == 50 and cfg["kprobe-mode"] == "boost"
    assert cfg["color"] is False
    assert cfg["colors"]["trace"] == ("\x1b[94;1m", "ansibrightblue bold")
    assert cfg["colors"]["toolbar.running"] == ("\x1b[37;42m", "ansiwhite bg:ansigreen")
    assert "warnings" not in cfg


def test_unusable_lines_are_named_and_skipped(tmp_path):
    path = write(tmp_path, "timer-period = soon\ncolor.nope = red\ncolor.error = purple\nkprobe-mode = warp\n"
                           "garbage line\nwho-knows = 1\n\n# only a comment\ncolor.sym = green\n")
    cfg = load_config(path)
    warnings = cfg["warnings"]
    assert [w.split(":")[1] for w in warnings] == ["1", "2", "3", "4", "5", "6"]
    assert "timer-period takes a number" in warnings[0]
    assert "no colour role 'nope'" in warnings[1]
    assert "unknown colour word 'purple'" in warnings[2]
    assert "kprobe-mode is one of" in warnings[3]
    assert "expected NAME = VALUE" in warnings[4]
    assert "unknown setting 'who-knows'" in warnings[5]
    assert "timer-period" not in cfg and "kprobe-mode" not in cfg
    assert cfg["colors"] == {"sym": ("\x1b[32m", "ansigreen")}


def test_missing_file_is_no_config(tmp_path):
    assert load_config(str(tmp_path / "absent")) == {}


def test_palette_restyles_output_roles():
    buf = io.StringIO()
    out = Output(buf, color=True, palette={"trace": translate("red underline")[0]})
    out.print("hit", "trace")
    out.print("bad", "error")
    assert buf.getvalue() == "\x1b[31;4mhit\x1b[0m\n\x1b[1;31mbad\x1b[0m\n"


def test_warnings_reach_stderr_and_the_shell_starts(user_image, tmp_path, run_shell):
    (tmp_path / "config" / "kprobe-shell").mkdir(parents=True)
    (tmp_path / "config" / "kprobe-shell" / "config").write_text("timer-period = 3000\ncolor.trace = purple\n")
    r = run_shell(user_image, "--batch", "-ex", "show timer-period", tmp_home=str(tmp_path))
    assert r.returncode == 0
    assert "config:2: unknown colour word 'purple'" in r.stderr
    assert re.search(r"^timer-period +3000 ", r.stdout, re.M)

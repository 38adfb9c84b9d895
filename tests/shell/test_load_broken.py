"""`load BAD` in the shell: refused with the loader's words, and the session stays on its
previous machine with its probes, breakpoints, registers and clock intact."""
from __future__ import annotations

import io

import pytest

from broken_images import make_broken_images
from harness import session_state
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session


@pytest.fixture(scope="module")
def broken(user_image, tmp_path_factory):
    return make_broken_images(user_image, tmp_path_factory.mktemp("broken"))


def test_load_of_each_broken_image_keeps_the_session(user_image, broken):
    s = Session(user_image, output=Output(io.StringIO(), color=False))
    for line in ("kprobe leaf", "kretprobe walk", "break walk", "run", "continue 40"):
        s.execute(line)
    before = session_state(s)
    assert before["planted"] and before["retired"] > 0
    for name, (path, words) in sorted(broken.items()):
        with pytest.raises(CommandError) as info:
            s.execute(f"load {path}")
        msg = str(info.value)
        assert all(w in msg for w in words), (name, msg)
        assert len(msg.splitlines()) == 1
        assert session_state(s) == before, name
    # ... and it still runs: the probes keep counting, the guest finishes.
    s.execute("delete 3")
    s.execute("run")
    assert "user image done" in s.machine.console
    assert s.probes[1].obj.hits > 0 and s.machine.kprobes.check_invariants() == []


def test_broken_image_on_the_command_line_exits_2_without_traceback(broken, tmp_path, run_shell):
    for name in ("32-bit", "segment on the reserved pages", "stripped", "cut at 200"):
        path, words = broken[name]
        r = run_shell(path, "--batch", "-ex", "run", tmp_home=str(tmp_path))
        assert r.returncode == 2, name
        assert all(w in r.stdout + r.stderr for w in words), (name, r.stdout, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr

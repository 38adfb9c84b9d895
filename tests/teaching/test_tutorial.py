"""`tutorial` driven end to end on a pseudo-terminal, as a student alone would use it.

The student types each step's command (with a wrong answer, a command from another step,
a refused command and a `hint` on the way); the test reads what the tour answers and
checks the machine-side facts it states (the planted int3 over do_fork's first byte, the
five hijacked slots).  A second test starts it from the interactive prompt and leaves it.
"""
from __future__ import annotations

import os
import re
import sys
import time

import pytest

pexpect = pytest.importorskip("pexpect")

PROMPT = r"tutorial (\d+)/16> "


def spawn(args: list[str], tmp_path, **kw):
    env = dict(os.environ, TERM="dumb", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("NO_COLOR", None)
    return pexpect.spawn(sys.executable, ["-m", "kprobe_shell", *args], env=env, encoding="utf-8",
                         codec_errors="replace", timeout=30, dimensions=(40, 160), **kw)


def flat(text: str) -> str:
    """The tour's words with its line wrapping undone."""
    return re.sub(r"\s+", " ", text)


class Student:
    def __init__(self, child):
        self.child = child
        self.step = 0

    def answer(self, line: str) -> str:
        """Wait for the tour's prompt, type line; returns what the tour said before the prompt."""
        self.child.expect(PROMPT)
        said = self.child.before
        self.step = int(self.child.match.group(1))
        self.child.sendline(line)
        return said

    def reply(self) -> str:
        """What the tour answered to the last line (up to its next prompt, left unread)."""
        self.child.expect(PROMPT)
        text = self.child.before
        self.child.sendline("")  # an empty line: the tour asks again, nothing runs
        return text


@pytest.mark.slow
def test_a_student_walks_through_the_whole_tour(kernel_path, tmp_path):
    child = spawn(["--color", "off", "-ex", "tutorial"], tmp_path)
    s = Student(child)
    intro = s.answer("kprobe do_exit")  # a wrong answer
    assert "Lesson 1: a first kprobe (step 1 of 16)" in intro and "Your turn: Plant a kprobe on do_fork." in intro
    said = s.reply()
    assert "Kprobe 1 at 0x" in said
    assert "Not quite: that placed a kprobe at do_exit+0x0, but this step asks for a kprobe at do_fork." in flat(said)
    assert "Deleted 1" in said and "(Removed what it placed, number 1, so the lesson can go on.)" in said
    s.answer("run")  # another step's command: not run
    said = s.reply()
    assert "'run' is not part of this step" in said and "[guest halted" not in said
    s.answer("kprobe no_such_function")  # refused by the shell itself
    said = s.reply()
    assert re.search(r"^error: .*no_such_function", said, re.M)
    assert "That was refused, and nothing changed." in said
    s.answer("kprobe do_fork")
    said = s.answer("hint")
    assert "Kprobe 2 at 0x101a30: do_fork+0x0/0x31" in said and "  Yes." in said
    assert "wrote int3 over it" in said and s.step == 2
    said = s.answer("x/4xb do_fork")
    assert "Type: x/4xb do_fork" in said
    said = s.answer("run")
    assert re.search(r"0x101a30 <do_fork\+0x0>:\s+0xcc\[55\]", said)
    assert "cc[55]: memory holds cc (int3), the original byte 55 (push rbp)" in said
    said = s.answer("probes")
    assert said.count(": p_do_fork_0: (do_fork+0x0/0x31)") == 6 and "[guest halted" in said
    said = s.answer("slot 1")  # the probe is number 2: a refusal, explained
    assert re.search(r"^2 +k +0x0+101a30 +do_fork\+0x0/0x31 +y +6 +0 +boost", said, re.M)
    said = s.answer("slot 2")
    assert "error: no probe or breakpoint number 1 (existing: 2)" in said
    said = s.answer("kretprobe path_lookup_recursive")
    assert "insn slot" in said and "  Yes." in said
    for line in ("reset", "tbreak path_lookup_recursive+0x86", "run"):
        s.answer(line)
    said = s.answer("stack 24")
    assert "Breakpoint 4, path_lookup_recursive+0x86/0xb2" in said
    said = s.answer("instances --table")
    assert said.count("kretprobe_trampoline: hijacked return address") == 5
    said = s.answer("continue")
    assert re.search(r"head -> \[#4 probe 3 \(path_lookup_recursive\)", said)
    said = s.answer("kretprobe do_sys_open")  # a pool of 10, not of 1: wrong, undone
    assert ": r_path_lookup_recursive_0: (" in said and "[guest halted" in said
    said = s.answer("kretprobe do_sys_open maxactive=1")
    assert "Not quite: that kretprobe has a pool of 10 instances; this step wants only one" in flat(said)
    assert "Deleted 5" in said
    for line in ("reset", "run", "probes"):
        said = s.answer(line)
    assert re.search(r"warning: probe 6 \(do_sys_open\) missed (\d+) hit\(s\)", said)
    child.expect(r"Tutorial finished: 16 of 16 steps\. The shell is yours\.")
    missed = int(re.search(r"^6 +r +0x0+1027d0 +do_sys_open\+0x0/0xba +y +\d+ +(\d+) ", child.before, re.M).group(1))
    assert missed > 0
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.slow
def test_the_tour_starts_at_the_prompt_and_quit_leaves_it_not_the_shell(kernel_path, tmp_path):
    child = spawn([], tmp_path)

    def wait_for(text: str) -> str:
        seen = ""
        while True:  # prompt_toolkit asks where the cursor is; answer as a terminal would
            i = child.expect_exact([text, "\x1b[6n"])
            seen += child.before
            if i == 0:
                return seen
            child.send("\x1b[1;1R")

    wait_for("(kprobe)")
    time.sleep(0.3)
    child.send("tutorial\r")
    wait_for("tutorial 1/16> ")
    child.sendline("skip")  # runs the step's command for the student
    said = wait_for("tutorial 2/16> ")
    assert "(running it for you: kprobe do_fork)" in said and "Kprobe 1 at 0x101a30" in said
    child.sendline("quit")
    said = wait_for("(kprobe)")
    assert "Left the tutorial after 1 of 16 steps (left); 'tutorial' starts it again." in said
    time.sleep(0.3)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_the_tour_refuses_to_start_without_a_terminal(kernel_path, run_shell_plain):
    r = run_shell_plain("--batch", "-ex", "tutorial")
    assert r.returncode == 1
    assert "the tutorial waits for you to type each command: start it at a terminal" in r.stdout + r.stderr


@pytest.fixture
def run_shell_plain(tmp_path):
    import subprocess

    def run(*args: str):
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
        return subprocess.run([sys.executable, "-m", "kprobe_shell", *args], capture_output=True, text=True,
                              env=env, timeout=60, stdin=subprocess.DEVNULL)

    return run


def test_ctrl_c_leaves_the_tour(kernel_path, tmp_path):
    child = spawn(["--color", "off", "-ex", "tutorial"], tmp_path)
    child.expect(PROMPT)
    child.sendintr()
    child.expect_exact("Left the tutorial after 0 of 16 steps (interrupted); 'tutorial' starts it again.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

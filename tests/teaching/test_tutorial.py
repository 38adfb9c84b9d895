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
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

PROMPT = r"tutorial (\d+)/48> "
ROOT = Path(__file__).resolve().parents[2]


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
    child = spawn(["--color", "off", "-ex", "tutorial"], tmp_path, cwd=str(ROOT))
    s = Student(child)
    _lesson_1(s)
    _lessons_2_and_3(s)
    _lessons_4_and_5(s)
    _lessons_6_and_7(s)
    _lessons_8_and_9(s)
    child.expect_exact("(kprobe)")  # as gdb after -ex: the prompt once the commands are done
    time.sleep(0.3)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def _lesson_1(s: Student) -> None:
    intro = s.answer("kprobe do_exit")  # a wrong answer
    assert "=== Lesson 1: a first kprobe ===" in intro
    assert "Lesson 1: a first kprobe (step 1 of 48)" in intro and "Your turn: Plant a kprobe on do_fork." in intro
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
    assert "=== Lesson 2: the copy in the insn slot ===" in said and "fresh machine" not in said


def _lessons_2_and_3(s: Student) -> None:
    said = s.answer("slot 2")
    assert "error: no probe or breakpoint number 1 (existing: 2)" in said
    said = s.answer("kprobe kprobe_target2")  # the wrong function: undone
    assert "no RIP-relative operand: the copy is byte for byte the original" in said and "  Yes." in said
    said = s.answer("kprobe kprobe_target")
    assert "Not quite: that placed a kprobe at kprobe_target2+0x0, but this step asks for a kprobe at kprobe_target." \
        in flat(said) and "Deleted 3" in said
    s.answer("slot 2")  # the do_fork probe again, not kprobe_target's
    said = s.reply()
    assert "Not quite: that showed the slot of probe 2, not of the kprobe_target probe." in flat(said)
    said = [s.answer(line) for line in ("slot 4", "kprobe do_fork+0xa", "reset")][1]  # what slot 4 showed
    assert "new = (0x105bf0 + 0x2c1e) - 0x40010020" in flat(said)
    said = s.answer("run")
    assert "Fresh machine from the bundled minikernel.elf with 3 probe(s)" in said
    said = s.answer("jprobe ip_queue_xmit")  # the built-in handler, not the guest's
    assert "smoke_test: kprobe_target(0x9e3779b9) = 0x34bd2893" in said
    assert said.count(": p_do_fork_10: (do_fork+0xa/0x31)") == 6 and "resume_execution ('call rel32')" in flat(said)
    assert "=== Lesson 3: a jprobe on ip_queue_xmit ===" in said and "(A fresh machine for this lesson" in said
    said = s.answer("jprobe ip_queue_xmit jip_queue_xmit")
    assert "Not quite: that jprobe's handler is the shell's built-in one" in flat(said) and "Deleted 6" in said
    for line in ("tbreak ip_queue_xmit+1", "run", "print $rsi"):
        said = s.answer(line)
    assert "jprobe: ip_queue_xmit(skb=000000000013d240, ipfragok=0) len=40 from netd[4]" in said
    assert "Breakpoint 8, ip_queue_xmit+0x1/0x145 (0x1043f1) in netd-4" in said
    said = s.answer("p $rdi")
    assert "Not quite: that printed 0; the first argument, skb, is in rdi (print $rdi)." in flat(said)
    said = s.answer("continue")
    assert "$2 = 1299008\r\n" in said and "  Yes." in said
    said = s.answer("kretprobe path_lookup_recursive")
    assert said.count("jprobe: ip_queue_xmit(") == 9 and "10 hits" in flat(said)


def _lessons_4_and_5(s: Student) -> None:
    for line in ("tbreak path_lookup_recursive+0x86", "run"):
        s.answer(line)
    said = s.answer("stack 24")
    assert "Breakpoint 10, path_lookup_recursive+0x86/0xb2" in said
    said = s.answer("instances --table")
    assert said.count("kretprobe_trampoline: hijacked return address") == 5
    said = s.answer("continue")
    assert re.search(r"head -> \[#4 probe 9 \(path_lookup_recursive\)", said)
    said = s.answer("kretprobe do_sys_open")  # a pool of 10, not of 1: wrong, undone
    assert ": r_path_lookup_recursive_0: (" in said and "[guest halted" in said
    said = s.answer("kretprobe do_sys_open maxactive=1")
    assert "Not quite: that kretprobe has a pool of 10 instances; this step wants only one" in flat(said)
    assert "Deleted 11" in said
    for line in ("run", "probes"):
        said = s.answer(line)
    assert re.search(r"warning: probe 12 \(do_sys_open\) missed (\d+) hit\(s\)", said)
    said = s.answer("kretprobe do_fork")  # lesson 6 wants to see a refusal
    assert re.search(r"^12 +r +0x0+1027d0 +do_sys_open\+0x0/0xba +y +5 +7 ", said, re.M)


def _lessons_6_and_7(s: Student) -> None:
    said = s.answer("try kretprobe do_execve")
    assert "Not quite: that placed a probe at do_fork+0x0; this step asks for a kretprobe on do_execve" in flat(said)
    said = s.answer("kretprobe do_execve --unsafe")
    assert "error: refusing a return probe on do_execve: it is on the exec path" in said and "  Yes." in said
    for line in ("run", "instances --table"):
        said = s.answer(line)
    assert "[bug: kernel BUG at kretprobe_trampoline: hello-5 returned through the trampoline" in said
    assert "BUG_ON(!orig_ret_address)" in flat(said)
    said = s.answer("p:smoke/pre kprobe_target value=%si:x32")  # the second argument's register
    assert "pool of probe 14 (do_execve): maxactive 10, 0 used, 10 free" in said
    assert "=== Lesson 7: the kernel's kprobes smoke test ===" in said
    said = s.answer("p:smoke/pre kprobe_target value=%di:x32")
    assert "Not quite: that probe does not read %di; this step wants an entry probe that fetches %di." in flat(said)
    for line in ("r:smoke/ret kprobe_target ret=$retval:x32", "tbreak fixup_selftest", "run", "smoke-test"):
        said = s.answer(line)
    assert re.search(r"pre: \(kprobe_target\+0x0/0xd\) value=0x9e3779b9", said)
    assert re.search(r"ret: \(smoke_test\+0x16/0x48 <- kprobe_target\) ret=0x34bd2893", said)
    said = s.answer("smoke-test 4")  # passes, but this step asks for the largest u32
    assert "Kprobe smoke test passed successfully" in said
    said = s.answer("smoke-test 0xffffffff")
    assert "Not quite: that ran with rand1 = 0x4; this step asks for 0xffffffff." in flat(said)


def _lesson_10(s: Student) -> str:
    """Each answer returns what the shell said since the last one: the step before's.
    Returns what lesson 9's last step printed."""
    lesson_9 = s.answer("exec guest_images/examples/wc /etc/motd < guest_images/examples/wc.c")
    assert "=== Lesson 10: uprobes: the program's own functions ===" in lesson_9
    s.answer("uprobe guest_images/examples/wc:start_c")  # the wrong function: taken back
    said = s.answer("uprobe guest_images/examples/wc:count fd=%di name=+0(%si):ustring")
    assert "Not quite: no uprobe on wc's count yet" in flat(said) and "so the lesson can go on" in said
    for line in ("uretprobe guest_images/examples/wc:count returned=$retval", "run"):
        s.answer(line)
    s.child.expect(r"Tutorial finished: 48 of 48 steps\. The shell is yours\.")
    said = s.child.before
    assert ': p_count_0: (0x401010) fd=0x3 name="/etc/motd"' in said
    assert ": r_count_0: (0x401403 <- 0x401010) returned=0x12" in said
    assert "count was entered 2 times (stdin, then /etc/motd) and returned 2 times." in flat(said)
    return lesson_9


def _lessons_8_and_9(s: Student) -> None:
    said = s.answer("set cpus 3")
    assert "Kprobe smoke test started (rand1 = 0xffffffff, div_factor = 3)" in said
    said = s.answer("set cpus 2")
    assert "Not quite: cpus is 3; this step wants 2." in flat(said) and "(Put cpus back, so the lesson can go on.)" in said
    said = [s.answer(line) for line in ("reset", "kprobe _spin_lock_irqsave", "run")][1]  # what reset said
    assert "Fresh machine from the bundled minikernel-smp.elf with 0 probe(s), 2 CPUs" in said
    said = s.answer("set kprobe-step in-place")
    hits = int(re.search(r"Every call on either CPU trapped: (\d+) hits", flat(said)).group(1))
    assert hits > 100 and ": p__spin_lock_irqsave_0:" not in said  # the tour made it silent
    for line in ("reset", "run"):
        said = s.answer(line)
    said = s.answer("exec guest_images/examples/wc /etc/motd")  # too few arguments: taken back
    lost = int(re.search(r"ran through it (\d+) time\(s\) unseen", said).group(1))
    assert lost > 0 and f"{lost} calls were never seen" in flat(said)
    said = s.answer("exec guest_images/examples/wc /etc/motd /nonexistent < guest_images/examples/wc.c")
    assert "Not quite: that queued another program or other arguments" in flat(said)
    assert "(Took the program off the guest's disk, so the lesson can go on.)" in said
    for line in ("p:opens do_sys_open filename=+0(%si):string", "run"):
        said = s.answer(line)
    said = _lesson_10(s)  # what lesson 9's run printed
    assert 'opens: (do_sys_open+0x0/0xba) filename="/nonexistent"' in said and "wc: cannot open /nonexistent" in said
    assert said.count("[guest halted") == 1  # one wc: the wrong answer's program was taken back


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
    wait_for("tutorial 1/48> ")
    child.sendline("skip")  # runs the step's command for the student
    said = wait_for("tutorial 2/48> ")
    assert "(running it for you: kprobe do_fork)" in said and "Kprobe 1 at 0x101a30" in said
    child.sendline("quit")
    said = wait_for("(kprobe)")
    assert "Left the tutorial after 1 of 48 steps (left); 'tutorial' starts it again." in said
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
                              env=env, timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)

    return run


def test_ctrl_c_leaves_the_tour(kernel_path, tmp_path):
    child = spawn(["--color", "off", "-ex", "tutorial"], tmp_path)
    child.expect(PROMPT)
    child.sendintr()
    child.expect_exact("Left the tutorial after 0 of 48 steps (interrupted); 'tutorial' starts it again.")
    child.expect_exact("(kprobe)")
    time.sleep(0.3)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_the_whole_tour_typed_by_itself_in_batch_mode(kernel_path, run_shell_plain):
    """Every step's own command passes its own check on the machine: the lessons still fit it."""
    r = run_shell_plain("--batch", "--color", "off", "-ex", "tutorial --auto")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    out = r.stdout
    assert out.count("\n  Yes.\n") == 48 and "Not quite" not in out and "error:" not in out.replace(
        "error: refusing a return probe on do_execve", "")
    assert all(f"\ntutorial {n}/48> " in out for n in range(1, 49))
    headings = re.findall(r"^=== Lesson (\d+): ", out, re.M)
    assert headings == [str(n) for n in range(1, 11)]
    assert out.count("(A fresh machine for this lesson") == 8  # lesson 2 goes on from lesson 1
    for fact in ("0xcc[55]", "new = (0x105bf0 + 0x2c1e) - 0x40010020",
                 "jprobe: ip_queue_xmit(skb=000000000013d240, ipfragok=0) len=40 from netd[4]",
                 "kretprobe_trampoline: hijacked return address; instance #4 of probe",
                 "warning: probe 8 (do_sys_open) missed 7 hit(s)",
                 "[bug: kernel BUG at kretprobe_trampoline: hello-5",
                 "pre: (kprobe_target+0x0/0xd) value=0x9e3779b9",
                 "Kprobe smoke test started (rand1 = 0xffffffff, div_factor = 3)",
                 "Fresh machine from the bundled minikernel-smp.elf with 1 probe(s), 2 CPUs",
                 "wc: cannot open /nonexistent", ': r_count_0: (0x401403 <- 0x401010) returned=0x12'):
        assert fact in out, fact
    assert out.count("Kprobe smoke test passed successfully") == 2
    lost = int(re.search(r"other CPUs ran through it (\d+) time\(s\) unseen", out).group(1))
    assert f"{lost} calls were never seen" in flat(out)
    assert out.rstrip().endswith("Tutorial finished: 48 step(s) typed by the tour.")


def test_a_tour_can_start_at_any_lesson(kernel_path, run_shell_plain):
    r = run_shell_plain("--batch", "--color", "off", "-ex", "tutorial 6 --auto")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert r.stdout.lstrip().startswith("=== Lesson 6: return probes on the exec path ===")
    assert "Lesson 6: return probes on the exec path (step 25 of 48)" in r.stdout
    assert r.stdout.rstrip().endswith("Tutorial finished: 24 step(s) typed by the tour.")


@pytest.mark.parametrize("args", ["11", "0", "x", "1 2", "--autos", "\u0663"])
def test_bad_tutorial_arguments_are_one_line_and_change_nothing(kernel_path, run_shell_plain, args):
    r = run_shell_plain("--batch", "-ex", "kprobe do_fork", "-ex", f"tutorial {args}", "-ex", "probes")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"-ex 'tutorial {args}': usage: tutorial [LESSON] [--auto]  (LESSON: 1-10, as in scripts/demos)"]


def test_every_lesson_of_scripts_demos_has_its_lesson_in_the_tour():
    from kprobe_shell.shell.commands.tutorial_lessons import LESSONS

    demos = sorted(int(p.name[:2]) for p in (ROOT / "scripts" / "demos").glob("[0-9][0-9]-*.kps"))
    assert [lesson.number for lesson in LESSONS] == demos
    assert all(lesson.steps for lesson in LESSONS)


def test_the_tour_boots_its_own_machine_whatever_the_config_and_gives_the_settings_back(kernel_path, tmp_path):
    import subprocess

    config = tmp_path / "config" / "kprobe-shell"
    config.mkdir(parents=True)
    (config / "config").write_text("timer-period = 1234\nkprobe-mode = single-step\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    r = subprocess.run([sys.executable, "-m", "kprobe_shell", "--batch", "--color", "off", "-ex", "set cpus 2",
                        "-ex", "tutorial 5 --auto", "-ex", "show timer-period", "-ex", "show cpus"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert "warning: probe 1 (do_sys_open) missed 7 hit(s)" in r.stdout  # the default timer's numbers
    shown = [line.split()[:2] for line in r.stdout.rstrip().splitlines()[-2:]]
    assert shown == [["timer-period", "1234"], ["cpus", "2"]]

"""The interactive prompt on a real pseudo-terminal: completion, history, repeat, Ctrl-C, toolbar.

pexpect plays the terminal.  prompt_toolkit asks the terminal where the cursor is (CPR,
ESC[6n) and draws the bottom toolbar only once it has an answer, so the helper answers
every such request as a terminal would.
"""
from __future__ import annotations

import os
import re
import sys
import time

import pytest

pexpect = pytest.importorskip("pexpect")

LOOP_PROGRAM = r"""
volatile long x;
__attribute__((noinline)) long leaf(long a, long b) { x += a; return a * b; }
void _start(void) { leaf(1, 2); for (;;) x++; }
"""

PROMPT = "(kprobe)"
CPR_REQUEST = "\x1b[6n"
UP = "\x1b[A"
NEW_PROMPT = "\x1b[?2004h"


@pytest.fixture(scope="module")
def loop_image(build_c_image) -> str:
    return build_c_image("loop", LOOP_PROGRAM)


class Terminal:
    """A shell on a pty: send keys, wait for text, answer cursor-position requests."""

    def __init__(self, image: str, home, timeout: float = 10, args: tuple = ()):
        env = dict(os.environ)
        env.update(TERM="xterm", XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
                   COLUMNS="160", LINES="40")
        env.pop("NO_COLOR", None)
        self.child = pexpect.spawn(sys.executable, ["-m", "kprobe_shell", image, *args], env=env, dimensions=(40, 160),
                                   encoding="utf-8", codec_errors="replace", timeout=timeout)
        self.seen = ""  # everything read so far

    def expect(self, pattern: str, regex: bool = False, timeout: float = -1) -> str:
        """Wait for pattern; returns the text before it. Answers CPR requests meanwhile."""
        patterns = [re.compile(pattern) if regex else re.compile(re.escape(pattern)), re.compile(re.escape(CPR_REQUEST))]
        before = ""
        while True:
            i = self.child.expect_list(patterns, timeout=timeout)
            before += self.child.before
            self.seen += self.child.before + self.child.after
            if i == 1:
                self.child.send("\x1b[1;1R")
                continue
            return before

    def prompt(self, text: str = PROMPT) -> str:
        """Wait for a new prompt (not the redraw of the line just typed); returns what came
        before it: the output of the last command. Every prompt starts by enabling
        bracketed paste."""
        before = self.expect(NEW_PROMPT)
        self.expect(text)
        return before

    def line(self, text: str) -> None:
        self.child.send(text + "\r")

    def quit(self) -> int:
        self.child.sendcontrol("d")
        self.child.expect(pexpect.EOF, timeout=10)
        self.child.close()
        return self.child.exitstatus


# A command's output line ends in \r\n right after its text; the echo of a typed line
# never does (the renderer closes it with escape sequences), so `WORD\r\n` finds output.


def plain(text: str) -> str:
    """Terminal output without escape sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\r\x08]", "", text)


def test_prompt_banner_toolbar_and_ctrl_d(loop_image, tmp_path):
    t = Terminal(loop_image, tmp_path)
    before = t.prompt()
    assert "loop.elf" in before and "entry _start" in before and "'help'" in before
    # the toolbar: state, rip as sym+off, task, virtual time, probes
    t.expect("stopped (not started)")
    bar = plain(t.expect("0 probes, 0 hits"))
    assert "rip _start+0x0" in bar and "t=0.000000000s" in bar
    assert t.quit() == 0


def test_tab_completes_symbol_and_history_recalls(loop_image, tmp_path):
    t = Terminal(loop_image, tmp_path)
    t.prompt()
    t.child.send("kprobe le")
    time.sleep(0.3)
    t.child.send("\t")
    time.sleep(0.3)
    t.child.send("\r")
    assert "Kprobe 1 at 0x" in plain(t.expect(r"leaf\+0x0/0x[0-9a-f]+", regex=True))
    t.prompt()
    t.expect("1 probe, 0 hits")
    t.line("echo marker-one")
    t.expect("marker-one\r\n", regex=True)
    t.prompt()
    # Up arrow recalls the last line; Enter runs it again
    t.child.send(UP)
    time.sleep(0.3)
    t.child.send("\r")
    t.expect("marker-one\r\n", regex=True)
    t.prompt()
    assert t.quit() == 0
    history = (tmp_path / "data" / "kprobe-shell" / "history").read_text()
    assert "+kprobe leaf" in history and "+echo marker-one" in history
    # a new shell remembers the previous one's lines
    t2 = Terminal(loop_image, tmp_path)
    t2.prompt()
    t2.child.send(UP)
    time.sleep(0.3)
    t2.child.send("\r")
    t2.expect("marker-one\r\n", regex=True)
    t2.prompt()
    assert t2.quit() == 0


def test_empty_enter_repeats_stepi_and_errors_keep_the_prompt(loop_image, tmp_path):
    t = Terminal(loop_image, tmp_path)
    t.prompt()
    t.line("stepi")
    assert "=>" in t.prompt()
    t.expect("t=0.000000001s")
    t.line("")  # repeats stepi
    assert "=>" in t.prompt()
    t.expect("t=0.000000002s")
    t.line("")
    t.prompt()
    t.expect("t=0.000000003s")
    t.line("frobnicate")
    assert "error: unknown command 'frobnicate'" in plain(t.prompt())
    t.line("")  # an unknown command is not repeated, and stepi no longer is either
    t.line("echo still-here")
    out = plain(t.expect("still-here\r\n"))
    assert out.count("error: unknown command") == 0
    t.prompt()
    t.expect("t=0.000000003s")
    # Ctrl-C at the prompt abandons the half-typed line
    t.child.send("echo abandoned")
    time.sleep(0.3)
    t.child.sendintr()
    t.prompt()
    t.line("echo fresh")
    t.expect("fresh\r\n", regex=True)
    t.prompt()
    assert "abandonedecho" not in plain(t.seen)
    # a pasted block runs line by line
    t.child.send("\x1b[200~echo paste-one\recho paste-two\r\x1b[201~")
    time.sleep(0.3)
    t.child.send("\r")
    t.expect("paste-one\r\n")
    t.expect("paste-two\r\n")
    t.prompt()
    assert "Traceback" not in t.seen
    assert t.quit() == 0


def test_ctrl_c_stops_a_running_guest(loop_image, tmp_path):
    t = Terminal(loop_image, tmp_path)
    t.prompt()
    t.line("run")
    time.sleep(0.5)
    for _attempt in range(3):
        t.child.sendintr()
        try:
            out = plain(t.expect(r"\[interrupted at _start\+0x[0-9a-f]+/", regex=True, timeout=3))
            break
        except pexpect.TIMEOUT:
            continue
    else:
        pytest.fail("Ctrl-C did not stop the guest")
    assert "Traceback" not in out
    t.prompt()
    t.expect("stopped (interrupted)")
    bar = plain(t.expect("0 probes"))
    assert "rip _start+0x" in bar
    t.line("regs")
    regs = plain(t.prompt())
    m = re.search(r"rip\s+0x([0-9a-f]+)\s+\d+\s+<(\w+)\+0x[0-9a-f]+>", regs)
    assert m, regs
    assert m.group(2) == "_start"
    # the guest is still alive: a bounded run goes on from there
    t.line("run 1000")
    assert "[stopped after the instruction budget at _start+" in plain(t.prompt())
    assert t.quit() == 0


class SilentTerminal(Terminal):
    """A terminal that never answers cursor-position requests (some serial consoles, web
    terminals, tmux in some modes)."""

    def expect(self, pattern: str, regex: bool = False, timeout: float = -1) -> str:
        compiled = re.compile(pattern) if regex else re.compile(re.escape(pattern))
        self.child.expect_list([compiled], timeout=timeout)
        self.seen += self.child.before + self.child.after
        return self.child.before


def test_ctrl_c_right_after_enter_is_not_lost_without_cpr(loop_image, tmp_path):
    """prompt_toolkit keeps the terminal raw for up to a second after Enter while it waits
    for a CPR answer: a Ctrl-C then is a byte, not SIGINT.  It must still stop the run,
    the first time and every time."""
    t = SilentTerminal(loop_image, tmp_path)
    t.prompt()
    for _ in range(2):
        t.line("run")
        t.child.sendintr()
        out = plain(t.expect(r"\[interrupted at _start\+0x[0-9a-f]+/", regex=True, timeout=8))
        assert "Traceback" not in out
        t.prompt()
    # the interrupt was spent on the run: the next command runs as typed
    t.line("run 1000")
    assert "[stopped after the instruction budget at _start+" in plain(t.prompt())
    assert t.quit() == 0


def test_background_run_gives_the_prompt_back_and_interrupt_stops_it(loop_image, tmp_path):
    t = Terminal(loop_image, tmp_path)
    t.prompt()
    t.line("continue &")
    assert "[running in the background: continue; 'interrupt' stops it]" in plain(t.prompt())
    t.expect("running")  # the toolbar, redrawn while the guest runs
    # commands that need the stopped guest are refused meanwhile, and say why
    t.line("regs")
    assert "the guest is running in the background; 'interrupt' stops it" in plain(t.prompt())
    t.line("echo still-here")
    t.expect("still-here\r\n", regex=True)
    t.prompt()
    t.line("interrupt")
    out = plain(t.expect(r"\[interrupted at _start\+0x[0-9a-f]+/", regex=True))
    assert "Traceback" not in out
    t.prompt()
    t.line("regs")
    assert re.search(r"rip\s+0x[0-9a-f]+\s+\d+\s+<_start\+", plain(t.prompt()))
    # Ctrl-C at the prompt stops a background run too
    t.line("c &")
    t.prompt()
    time.sleep(0.3)
    t.child.sendintr()
    t.expect(r"\[interrupted at _start\+0x[0-9a-f]+/", regex=True)
    t.line("interrupt")
    t.expect("the guest is not running in the background")
    t.prompt()
    assert t.quit() == 0


def test_commands_block_typed_at_the_prompt(loop_image, tmp_path):
    t = Terminal(loop_image, tmp_path)
    t.prompt()
    t.line("break leaf")
    t.prompt()
    t.line("commands 1")
    t.expect('End with a line saying just "end".')
    t.prompt(">")
    t.line("echo in-leaf-commands")
    t.prompt(">")
    t.line("end")
    assert "Commands for 1: 1 line(s)" in plain(t.prompt())
    t.line("run")
    raw = t.prompt()
    assert "Breakpoint 1, leaf+0x0" in plain(raw)
    assert "in-leaf-commands\r\n" in raw  # output, not the echo of the typed line
    t.line("quit")
    t.child.expect(pexpect.EOF, timeout=10)
    t.child.close()
    assert t.child.exitstatus == 0


# ---------------------------------------------------------------------- in-process pieces
def test_toolbar_states_hits_and_time(user_image):
    from kprobe_shell.shell.session import Session
    from kprobe_shell.shell.toolbar import format_seconds, toolbar_text

    s = Session(user_image)
    assert "stopped (not started)" in toolbar_text(s) and "rip _start+0x0 " in toolbar_text(s)
    s.execute("kprobe leaf")
    s.execute("run 300")
    text = toolbar_text(s)
    assert text.startswith(" stopped ") and "t=0.000000300s" in text
    assert "1 probe, " in text and "0 hits" not in text
    s.execute("run")
    text = toolbar_text(s)
    assert text.startswith(" halted ") and "rip" not in text
    assert f"1 probe, {s.probes[1].obj.hits} hits" in text
    assert format_seconds(1_234_567_890_123) == "1234.567890123"
    from kprobe_shell.machine import StopEvent, StopReason

    s.replace_machine(user_image)
    s.stop_event = StopEvent(StopReason.FAULT, s.machine.rip, "page fault")
    assert toolbar_text(s).startswith(" faulted ")
    s.stop_event = StopEvent(StopReason.BREAKPOINT, s.machine.rip, "breakpoint 1")
    assert toolbar_text(s).startswith(" stopped (breakpoint) ")


def test_toolbar_does_not_touch_a_running_guest(user_image):
    from kprobe_shell.shell.session import Session
    from kprobe_shell.shell.toolbar import Toolbar

    s = Session(user_image)
    bar = Toolbar(s)
    bar.refresh()

    touched = []

    class Running:
        running = True

        def __getattr__(self, name):
            touched.append(name)
            raise AttributeError(name)

    real, s.machine = s.machine, Running()
    try:
        bar.refresh()
        assert "running" in "".join(t for _, t in bar())
    finally:
        s.machine = real
    assert touched == []


def test_repeat_form_follows_the_registry():
    from kprobe_shell.shell.repl import repeat_form

    assert repeat_form("stepi") == "stepi"
    assert repeat_form("si 4") == "si 4"
    assert repeat_form("x/4gx $rsp") == "x/4gx"  # gdb: the next units
    assert repeat_form("help") is None           # repeatable=False
    assert repeat_form("set explain on") is None
    assert repeat_form("frobnicate") is None


def test_history_file_is_trimmed_loosely(tmp_path):
    from kprobe_shell.shell.repl import trim_history_file

    path = tmp_path / "history"
    path.write_text("".join(f"\n# 2024-01-01 00:00:{i:02d}\n+cmd {i}\n" for i in range(300)))
    trim_history_file(str(path), 280)  # within a tenth: left alone
    assert path.read_text().count("+cmd") == 300
    trim_history_file(str(path), 100)
    text = path.read_text()
    assert text.count("+cmd") == 100
    assert "+cmd 299\n" in text and "+cmd 199\n" not in text and "+cmd 200\n" in text
    from prompt_toolkit.history import FileHistory

    assert list(FileHistory(str(path)).load_history_strings())[0] == "cmd 299"


def test_history_falls_back_to_memory(monkeypatch, tmp_path):
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    from kprobe_shell.shell.repl import open_history

    class FakeSession:
        settings = {"history-size": 50}

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert isinstance(open_history(FakeSession(), {}), FileHistory)
    assert (tmp_path / "data" / "kprobe-shell" / "history").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker / "below-a-file"))  # cannot be created, even as root
    assert isinstance(open_history(FakeSession(), {}), InMemoryHistory)
    FakeSession.settings = {"history-size": 0}
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert isinstance(open_history(FakeSession(), {}), InMemoryHistory)


def test_set_history_size_trims_the_history_file_at_once(user_image, tmp_path):
    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session

    path = tmp_path / "history"
    path.write_text("".join(f"\n# 2024-01-01 00:00:{i:02d}\n+cmd {i}\n" for i in range(30)))
    s = Session(user_image, output=Output(open(os.devnull, "w")))
    s.history_path = str(path)
    s.execute("set history-size 5")
    text = path.read_text()
    assert text.count("+cmd") == 5 and "+cmd 29\n" in text and "+cmd 24\n" not in text
    s.execute("set history-size 0")
    assert path.read_text().count("+cmd") == 0
    assert s.settings["history-size"] == 0


def test_ex_commands_run_then_the_prompt_as_gdb(loop_image, tmp_path):
    """`kprobe-shell -ex CMD` at a terminal: the commands, then the prompt (gdb without -batch)."""
    t = Terminal(loop_image, tmp_path, args=("-ex", "kprobe leaf", "-ex", "echo placed"))
    out = t.prompt()
    assert "Kprobe 1 at 0x" in out and "placed\r\n" in out
    t.line("probes")
    assert "leaf+0x0" in t.prompt()
    assert t.quit() == 0

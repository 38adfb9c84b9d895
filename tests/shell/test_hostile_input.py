"""Hostile command lines and files: each one precise message, and nothing changes.

Numbers are read by one parser (kprobe_shell/numbers.py): ASCII digits only, at most
64 bits ("numeric constant too large", as gdb says), whatever command reads them.
Files a user names are read only when they are regular files of a sane size
(kprobe_shell/userfiles.py).
"""
from __future__ import annotations

import io
import os

import pytest

from harness import session_state
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session

SETUP = ["kprobe leaf", "kretprobe walk", "break walk", "p:e1 leaf x=%di", "run 300"]
BIG = "1" * 5000  # past Python's 4,300-digit limit for int()


@pytest.fixture
def session(user_image):
    s = Session(user_image, output=Output(io.StringIO(), color=False))
    for line in SETUP:
        s.execute(line)
    return s


HOSTILE = [
    # numbers wider than 64 bits, or longer than int() reads
    ("kprobe 0x10000000000401000", "numeric constant too large (the address)"),
    (f"kprobe {BIG}", "numeric constant too large (the address)"),
    (f"kprobe 0x{BIG}", "numeric constant too large (the address)"),
    (f"kprobe leaf+{BIG}", "numeric constant too large (the offset)"),
    (f"x/{BIG}x leaf", "numeric constant too large (the count)"),
    ("x/4xb 0x10000000000401000", "numeric constant too large (the address)"),
    ("print 0x10000000000401000", "numeric constant too large"),
    (f"until 0x{BIG}", "numeric constant too large (the address)"),
    (f"stepi {BIG}", "numeric constant too large (the count)"),
    (f"bt {BIG}", "numeric constant too large (the frame count)"),
    (f"delete {BIG}", f"'{BIG[:40]}' is not a probe number"),
    (f"p leaf x=%di if x == {BIG}", "parse error: Numeric constant too large in filter"),
    ("p leaf x=%di if x == 0x10000000000000000", "parse error: Numeric constant too large in filter"),
    (f"r{BIG} walk", "parse error: Invalid maxactive number"),
    # Unicode digits are not digits here
    ("p leaf $arg²", "parse error: Invalid $-variable '$arg²'"),
    ("r ٣", "parse error: Invalid probed address or symbol '٣'"),
    ("run ٣", "'٣' is not a number (the instruction count: decimal, or hex with 0x)"),
    ("x/٣x leaf", "bad format '/٣x'"),
    ("kprobe ٣", "no symbol '٣' in the image"),
    ("set cpus ٣", "set cpus takes a number"),
    ("set cpus NaN", "set cpus takes a number"),
    ("set timer-period ١٠٠٠", "set timer-period takes a number"),
    # filters nested past what a parser should recurse on
    ("p leaf x=%di if " + "(" * 400 + "x == 1" + ")" * 400, "parse error: Filter nested too deeply (max 32 '(' and '!')"),
    ("p leaf x=%di if " + "!" * 3000 + "x == 1", "parse error: Filter nested too deeply (max 32 '(' and '!')"),
    ("p leaf x=%di if " + " || ".join(["x == 1"] * 200), "parse error: Too many terms in predicate expression (max 128)"),
    # file names the kernel cannot take, and files that are not files
    ("load /tmp/a\0b", "/tmp/a\\x00b: the file name contains a NUL byte"),
    ("source /tmp/a\0b", "cannot read /tmp/a\\x00b: the file name contains a NUL byte"),
    ("handlers /tmp/a\0b", "cannot read /tmp/a\\x00b: the file name contains a NUL byte"),
    ("trace save /tmp/a\0b", "cannot write /tmp/a\\x00b: the file name contains a NUL byte"),
    ("load /proc/self/mem", "/proc/self/mem: cannot read: Input/output error"),
    ("source /dev/zero", "cannot read /dev/zero: not a regular file (a character device)"),
    ("handlers /dev/zero", "cannot read /dev/zero: not a regular file (a character device)"),
    ("source /", "cannot read /: not a regular file (a directory)"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("line, message", HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_hostile_line_is_refused_and_changes_nothing(session, line, message):
    before = session_state(session)
    with pytest.raises(CommandError) as info:
        session.execute(line)
    text = str(info.value)
    assert text.splitlines()[0].startswith(message) or message in text.splitlines()[0], text[:300]
    # (parse errors add the line and a caret under it, as ftrace's error_log does)
    assert len(text.splitlines()[0]) < 300, "the message echoes no 5,000-character token"
    assert session_state(session) == before


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_without_blocking(session, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for cmd in ("source", "handlers"):
        with pytest.raises(CommandError, match=r"not a regular file \(a FIFO\)"):
            session.execute(f"{cmd} {fifo}")


def test_a_huge_command_file_is_refused(session, tmp_path):
    from kprobe_shell.userfiles import MAX_TEXT_FILE

    big = tmp_path / "big.kps"
    with open(big, "wb") as f:
        f.truncate(MAX_TEXT_FILE + 1)
    with pytest.raises(CommandError, match=rf"too large \({MAX_TEXT_FILE + 1} bytes; at most {MAX_TEXT_FILE}\)"):
        session.execute(f"source {big}")


@pytest.mark.timeout(60)
def test_dash_x_dev_zero_and_a_fifo_are_refused_at_once(user_image, tmp_path, run_shell):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a character device"), (str(fifo), "a FIFO")):
        r = run_shell(user_image, "--batch", "-x", path, tmp_home=str(tmp_path))
        assert r.returncode == 1
        assert f"cannot read {path}: not a regular file ({kind})" in r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr


def test_unicode_digits_on_the_command_line_are_refused(user_image, tmp_path, run_shell):
    r = run_shell(user_image, "--batch", "--cpus", "٣", tmp_home=str(tmp_path))
    assert r.returncode == 2 and "argument --cpus: '٣' is not a number" in r.stderr

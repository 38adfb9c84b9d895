"""The programs' own symbols beside the kernel's: `symbols`, `x`, `disas` (PROGRAM:SYMBOL)
and `bt` walking a program's frames above a system call."""
from __future__ import annotations

import io
import re

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session


def session_with(*lines: str) -> tuple[Session, io.StringIO]:
    out = io.StringIO()
    s = Session(output=Output(out, color=False))
    for line in lines:
        s.execute(line)
    return s, out


def after(out: io.StringIO, s: Session, *lines: str) -> str:
    at = len(out.getvalue())
    for line in lines:
        s.execute(line)
    return out.getvalue()[at:]


def test_symbols_lists_the_programs_beside_the_kernels(build_program):
    s, out = session_with(f"exec {build_program('hello', 'glibc')}")
    text = after(out, s, "symbols *write")
    assert re.search(r"^0x\w+ +\d+ FUNC +sys_write$", text, re.M)
    assert re.search(r"^0x0*4\w+ +\d+ FUNC +hello-glibc:write$", text, re.M)
    assert text.index(" sys_write\n") < text.index("hello-glibc:write")
    only = after(out, s, "symbols hello-glibc:mai?")
    assert re.fullmatch(r"0x0*4\w+ +\d+ FUNC +hello-glibc:main\n", only)


def test_x_and_disas_take_program_symbols_before_and_during_the_run(build_program):
    path = build_program("hello", "glibc")
    s, out = session_with(f"exec {path}")
    main = s.machine.userspace.symbols.named("hello-glibc").lookup("main")
    # Not started: the program's file is disassembled.
    text = after(out, s, "disas hello-glibc:main")
    assert f"Dump of assembler code for function hello-glibc:main (0x{main.address:x}, {main.size} bytes):" in text
    assert f"(from the file {path}: the current process does not run hello-glibc)" in text
    assert re.search(r"<main\+0x0 \[hello-glibc\]>:  [0-9a-f ]+\w", text)
    s.execute("break sys_write")
    s.execute("run")
    during = after(out, s, "disas hello-glibc:main")
    assert "from the file" not in during
    assert text.splitlines()[2:] == [line for line in during.splitlines()[1:]]
    x = after(out, s, f"x/2i {path}:main+0")  # the host path names the program too
    assert x.count(" [hello-glibc]>:") == 2 and x.startswith(f"   0x{main.address:016x}")


def test_bad_program_symbols_say_what_is_wrong(build_program):
    s, out = session_with(f"exec {build_program('hello', 'glibc')}")
    for line, message in (("x/2x nope:main", "no program 'nope' on this machine (programs: hello-glibc)"),
                          ("disas hello-glibc:mian", "no symbol 'mian' in the program hello-glibc (did you mean hello-glibc:main")):
        with pytest.raises(CommandError) as exc:
            s.execute(line)
        assert message in str(exc.value)


def test_static_pie_symbols_are_at_the_load_address(build_program):
    s, out = session_with(f"exec {build_program('hello', 'glibc', extra=('-static-pie', '-fPIE'), tag='-pie')}")
    text = after(out, s, "symbols hello-glibc-pie:main")
    assert re.fullmatch(r"0x00005555555\w+ +\d+ FUNC +hello-glibc-pie:main\n", text)


@pytest.mark.parametrize("libc, extra, how", [
    ("glibc", (), "by .eh_frame CFI"),
    ("musl", ("-fno-omit-frame-pointer", "-fno-asynchronous-unwind-tables"), "by the frame-pointer chain"),
])
def test_bt_walks_the_programs_frames_above_the_system_call(build_program, libc, extra, how):
    """From sys_write: the kernel frames, the user rip (in raw_write, from pt_regs), then
    inner, middle, main, each a return address just after a call."""
    s, out = session_with(f"exec {build_program('frames', libc, extra=extra, tag='-' + how.split()[-1])}",
                          "break sys_write", "run")
    text = after(out, s, "bt")
    lines = text.splitlines()
    user = next(i for i, line in enumerate(lines) if "(user mode," in line)
    assert re.search(r" in raw_write[\w.]*\+0x\w+/0x\w+ \[frames-", lines[user])
    walked = lines[user + 1:user + 4]
    for line, func in zip(walked, ("inner", "middle", "main")):
        # raw_write is a leaf: with frame pointers, gcc gives it none; its caller is found
        # by its prologue (none: the return address is on top of the stack)
        found = "by prologue analysis: no frame pointer" if func == "inner" and "chain" in how else how
        assert re.fullmatch(rf"#\d+ +0x\w+ in {func}\+0x\w+/0x\w+ \[frames-\S+\] \(user, {found}\)", line), text
        pc = int(line.split()[1], 16)
        assert s.machine.read(pc - 5, 1) == b"\xe8"  # after a call rel32

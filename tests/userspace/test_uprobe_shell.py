"""uprobes in the shell: commands, uprobe_events lines, listings, bad input."""
from __future__ import annotations

import io
import re

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session


@pytest.fixture(scope="module")
def uprobed(build_program):
    return build_program("uprobed", "glibc", extra=("-g",))


def session() -> tuple[Session, io.StringIO]:
    out = io.StringIO()
    return Session(output=Output(out, color=False)), out


def test_uprobe_and_uretprobe_lines_trace_arguments_and_returns(uprobed):
    s, out = session()
    s.execute(f"exec {uprobed} 6 shell")
    s.execute(f"uprobe {uprobed}:greet who=+0(%di):ustring times=%si")
    s.execute(f"p:mine/g2 {uprobed}:greet who:string times")  # names from the program's DWARF
    s.execute(f"r {uprobed}:greet $retval")
    s.execute("run")
    text = out.getvalue()
    assert re.search(r"uprobed-glibc-2 +\[000\] +[0-9.]+: p_greet_0: \(0x[0-9a-f]+\) who=\"shell\" times=0x2\n", text), text
    assert re.search(r"uprobed-glibc-2 +\[000\] +[0-9.]+: g2: \(0x[0-9a-f]+\) who=\"shell\" times=2\n", text)
    assert re.search(r"r_greet_0: \(0x[0-9a-f]+ <- 0x[0-9a-f]+\) arg1=0x1a\n", text)
    assert "p:mine/g2 " in text and ":greet who=who:string times=times" in text
    s.execute("probes")
    rows = out.getvalue().splitlines()
    assert any(re.match(r"1 +u +0x[0-9a-f]{16}  greet\+0x0 \[uprobed-glibc\] +y +1 +0  uprobe", r) for r in rows)
    assert any(re.match(r"3 +ur +0x[0-9a-f]{16}  greet\+0x0 \[uprobed-glibc\] +y +1 +0", r) for r in rows)
    s.execute("kprobe_profile")
    assert re.search(r"^  g2 +1 +0$", out.getvalue(), re.M)


def test_a_file_offset_as_uprobe_events_takes_it(uprobed):
    from kprobe_shell.uprobes.program import ProbedProgram

    prog = ProbedProgram(uprobed)
    offset = prog.offset_of_vaddr(prog.vaddr_of_symbol("jumper"))
    s, out = session()
    s.execute(f"exec {uprobed} 3")
    s.execute(f"p {uprobed}:0x{offset:x}")
    s.execute("run")
    assert re.search(rf"p_uprobed-glibc_0x{offset:x}".replace("-", "_") + r": \(0x[0-9a-f]+\)\n", out.getvalue())
    assert f"{uprobed}:0x{offset:016x}" in out.getvalue()


def test_deleting_a_uprobe_puts_the_byte_back_and_reset_recreates_it(uprobed):
    s, out = session()
    s.execute(f"exec {uprobed} 3")
    s.execute(f"uprobe {uprobed}:fib")
    s.execute("run")
    first = s.probes[1].obj.hits
    assert first > 0
    s.execute("reset")
    s.execute("run")
    assert s.probes[1].obj.hits == first  # re-created on the fresh machine
    s.execute("reset")
    s.execute("delete 1")
    s.execute("run")
    assert "fib(3) = 2" in s.machine.console and not s.probes


@pytest.mark.parametrize("line, message", [
    ("uprobe ./no-such-program:main", "No such file or directory"),
    ("uprobe main", "is not a uprobe location"),
    ("uprobe {prog}:fib+1", "fib+0x1 is not an instruction boundary"),
    ("uprobe {prog}:nosuch", "no function 'nosuch' in uprobed-glibc"),
    ("p {prog}:0x0", "is outside the program's text"),
    ("uretprobe {prog}:fib maxactive=0", "maxactive must be from 1 to 64"),
    ("r9 {prog}:fib", "uprobe_events takes no MAXACTIVE"),
])
def test_bad_uprobes_are_refused_with_the_reason(uprobed, line, message):
    s, _out = session()
    s.execute(f"exec {uprobed}")
    with pytest.raises(CommandError, match=re.escape(message)):
        s.execute(line.format(prog=uprobed))
    assert not s.probes


def test_handler_file_decorators(uprobed, tmp_path):
    handlers = tmp_path / "uh.py"
    handlers.write_text(f'''from kprobe_shell import uprobe, uretprobe
from kprobe_shell.handlers import emit

@uprobe("{uprobed}:greet")
def on_greet(up, regs):
    emit(who=regs.read_string(regs.rdi), times=regs.rsi)

@uretprobe("{uprobed}:fib", maxactive=4)
def fib_ret(ri, regs):
    if regs.rax > 10:
        emit(value=regs.rax, pid=ri.pid)
''')
    s, out = session()
    s.execute(f"exec {uprobed} 8 h")
    s.execute(f"handlers {handlers}")
    s.execute("run")
    text = out.getvalue()
    assert re.search(r"Uprobe 1 at 0x[0-9a-f]+: greet\+0x0 \[uprobed-glibc\]  on_greet \(uh.py:4\)", text)
    assert re.search(r"Uretprobe 2 at 0x[0-9a-f]+: fib\+0x0 \[uprobed-glibc\] maxactive=4  fib_ret \(uh.py:8\)", text)
    assert re.search(r": on_greet: \(0x[0-9a-f]+\) who=\"h\" times=2\n", text)
    assert re.search(r": fib_ret: \(0x[0-9a-f]+ <- 0x[0-9a-f]+\) value=21 pid=2\n", text)
    assert s.probes[2].obj.nmissed > 0 and s.probes[2].obj.faults == 0


def test_a_uprobe_given_before_exec_waits_for_the_program(uprobed):
    s, out = session()
    s.execute(f"uprobe {uprobed}:greet who=+0(%di):ustring")  # the kernel runs no program yet
    s.execute(f"exec {uprobed} 3 late")
    s.execute("run")
    assert re.search(r": p_greet_0: \(0x[0-9a-f]+\) who=\"late\"\n", out.getvalue())
    assert s.probes[1].obj.hits == 1


def test_perf_probe_x_puts_a_uprobe_on_the_programs_function(uprobed):
    s, out = session()
    s.execute(f"exec {uprobed} 3 x")
    s.execute(f"probe -x {uprobed} greet who:string times")
    s.execute(f"probe -x {uprobed} greet%return $retval")
    s.execute("run")
    text = out.getvalue()
    assert re.search(r": p_greet_0: \(0x[0-9a-f]+\) who=\"x\" times=2\n", text), text
    assert re.search(r": r_greet_0: \(0x[0-9a-f]+ <- 0x[0-9a-f]+\) arg1=0x12\n", text), text

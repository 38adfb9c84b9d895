"""Programs the kernel cannot run, or that misbehave: a clear message, nothing lost, and
the machine (and the shell) go on."""
from __future__ import annotations

import io
import shutil

import pytest

from userprogs import program_output
from kprobe_shell import Machine, MachineError, Program, StopReason
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session


def run(*programs: Program, budget: int = 100_000_000, **kw) -> Machine:
    m = Machine(programs=list(programs), **kw)
    ev = m.run(max_insns=budget)
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    return m


def test_a_dynamic_executable_is_refused(build_program):
    path = build_program("hello", "glibc", extra=("-dynamic",), tag="-dyn")
    m = run(Program(path, ["hello"]))
    assert "dynamically linked (it asks for an ELF interpreter); only static executables run here" in m.console
    assert "init: reaped pid 2 (hello-glibc-dyn), exit code 127\n" in m.console


def test_a_32_bit_executable_is_refused(build_program, tmp_path):
    path = tmp_path / "hello32"
    data = bytearray(open(build_program("hello", "glibc"), "rb").read())
    data[4] = 1  # EI_CLASS: ELFCLASS32
    path.write_bytes(bytes(data))
    m = run(Program(str(path), ["hello32"]))
    assert "exec: /bin/hello32: not an x86_64 (64-bit) executable\n" in m.console
    assert "init: reaped pid 2 (hello32), exit code 127\n" in m.console


def test_not_an_elf(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some text\n")
    m = run(Program(str(path), ["notes.txt"]))
    assert "init: /bin/notes.txt: exec format error: not a static x86_64 Linux executable\n" in m.console


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_a_segfault_kills_the_process_and_the_machine_goes_on(build_program, libc):
    segv = build_program("segv", libc)
    hello = build_program("hello", libc)
    m = run(Program(segv, ["segv"]), Program(hello, ["hello"]))
    assert f"about to fault\nsegv-{libc}[2]: segfault at 0 ip " in m.console
    assert " error 6\n" in m.console  # a user-mode write to a page that is not present
    assert f"init: reaped pid 2 (segv-{libc}), killed by signal 11\n" in m.console
    assert f"init: reaped pid 3 (hello-{libc}), exit code 0\n" in m.console


def test_an_unknown_system_call_is_enosys_and_reported_once(build_program):
    m = run(Program(build_program("nosys", "glibc"), ["nosys"]))
    out = program_output(m.console)
    assert out.count("nosys-glibc[2]: system call 999 is not implemented (-ENOSYS)\n") == 1
    assert "syscall(999) -> -1 (Function not implemented)\nagain -> -1\n" in out


def test_a_program_that_never_ends_stops_at_the_budget(build_program):
    m = Machine(programs=[Program(build_program("forever", "glibc"), ["forever"])])
    for _ in range(2):
        ev = m.run(max_insns=300_000)
        assert ev.reason is StopReason.BUDGET
        assert any(t.comm == "forever-glibc" for t in m.tasks.all())


def test_unbounded_allocation_ends_in_enomem_not_on_the_host(build_program):
    m = run(Program(build_program("hog", "glibc"), ["hog"]), ram_size=6 << 20, budget=200_000_000)
    out = program_output(m.console)
    assert out.startswith("malloc failed after ") and out.endswith(" MiB\n")
    assert 0 < int(out.split()[3]) < 6
    assert "init: reaped pid 2 (hog-glibc), exit code 0\n" in m.console


def test_bad_ram_size_and_missing_program(tmp_path):
    with pytest.raises(MachineError, match="guest RAM"):
        Machine(programs=["/bin/true"], ram_size=12345)
    with pytest.raises(MachineError, match="cannot read /no/such/program"):
        Machine(programs=["/no/such/program"])


def test_the_shell_says_what_is_wrong_and_stays_usable(build_program):
    out = io.StringIO()
    s = Session(output=Output(out, color=False))
    with pytest.raises(CommandError, match="cannot read /no/such/program: No such file or directory"):
        s.execute("exec /no/such/program")
    with pytest.raises(CommandError, match="which program"):
        s.execute("exec")
    with pytest.raises(CommandError, match="must come last"):
        s.execute("exec /bin/true < a b")
    assert s.programs == []
    s.execute(f"exec {build_program('hello', 'glibc')} from-the-shell")
    s.execute("run")
    assert "argv[1] = from-the-shell\n" in s.machine.console
    assert s.machine.halted


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_threads_are_refused_with_a_message(build_program, libc):
    m = run(Program(build_program("threads", libc, extra=("-pthread",)), ["threads"]))
    out = program_output(m.console)
    assert out.count(f"threads-{libc}[2]: clone(CLONE_VM|CLONE_THREAD): threads are not supported (-ENOSYS)\n") == 1
    assert out.endswith("main goes on\n") and "pthread_create failed: " in out

"""Unmodified static Linux programs run as user processes on the bundled kernel.

Each program's console output must be byte for byte what the same binary writes natively
into a pipe (the guest console is not a terminal, so stdio buffers the same way), with
glibc and with musl.
"""
from __future__ import annotations

import subprocess

import pytest

from userprogs import LIBCS, program_output
from kprobe_shell import Machine, Program, StopReason

BUDGET = 200_000_000

STDIN_TEXT = b"first line\nsecond line\nthe third one\n"


def run_programs(*programs: Program, **kw) -> Machine:
    m = Machine(programs=list(programs), **kw)
    event = m.run(max_insns=BUDGET)
    assert event.reason is StopReason.HALTED, m.describe_stop(event)
    return m


def native(argv: list[str], stdin: str | None = None) -> str:
    with open(stdin or "/dev/null", "rb") as f:
        return subprocess.run(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).stdout.decode()


@pytest.fixture(scope="module")
def stdin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stdin") / "input.txt"
    path.write_bytes(STDIN_TEXT)
    return str(path)


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("name, args", [
    ("hello", ["one", "two words", ""]),
    ("memory", []),
])
def test_output_is_the_native_output(build_program, libc, name, args):
    path = build_program(name, libc)
    m = run_programs(Program(path, [f"{name}-{libc}", *args]))
    assert program_output(m.console) == native([path, *args])
    assert f"init: reaped pid 2 ({name}-{libc}), exit code 0\n" in m.console


@pytest.mark.parametrize("libc", LIBCS)
def test_stdin_from_a_file(build_program, stdin_file, libc):
    path = build_program("stdin", libc)
    m = run_programs(Program(path, ["stdin"], stdin=stdin_file))
    out = program_output(m.console)
    assert out == native([path], stdin_file)
    assert "3: THE THIRD ONE\n" in out


@pytest.mark.parametrize("libc", LIBCS)
def test_fork_exec_wait(build_program, libc):
    path = build_program("forkexec", libc)
    guest_self = f"/bin/forkexec-{libc}"
    m = run_programs(Program(path, [guest_self, guest_self]))
    assert program_output(m.console) == native([path, path])
    assert "exec child exited with 5\n" in m.console


def test_same_command_same_bytes(build_program):
    progs = [Program(build_program("forkexec", "glibc"), ["forkexec", "/bin/forkexec-glibc"]),
             Program(build_program("memory", "glibc"), ["memory"])]
    a, b = run_programs(*progs), run_programs(*progs)
    assert (a.console, a.retired) == (b.console, b.retired)
    assert a.console.count("init: reaped pid") == 2


def test_two_programs_linked_at_the_same_address_run_at_once(build_program):
    hello = build_program("hello", "glibc")
    memory = build_program("memory", "glibc")
    m = run_programs(Program(hello, ["hello", "x"]), Program(memory, ["memory"]))
    assert "argv[1] = x\n" in m.console and "longjmp back with 42\n" in m.console
    assert "init: reaped pid 2 (hello-glibc), exit code 0" in m.console
    assert "init: reaped pid 3 (memory-glibc), exit code 0" in m.console


def test_static_pie(build_program):
    path = build_program("hello", "glibc", extra=("-static-pie", "-fPIE"), tag="-pie")
    m = run_programs(Program(path, ["hello", "pie"]))
    assert program_output(m.console) == native([path, "pie"])


def test_fpu_state_is_per_process_lazily_switched(build_program):
    """Two programs computing in floating point and SSE at once, preempted often: each
    prints what it prints natively; the #NM traps of lazy switching reach the kernel's
    math_state_restore()."""
    from kprobe_shell import Kprobe

    path = build_program("fpu", "glibc", extra=("-lm",))
    m = Machine(programs=[Program(path, ["fpu", "1.5"]), Program(path, ["fpu", "7"])], timer_period=700)
    restores = m.register_kprobe(Kprobe(symbol_name="math_state_restore", pre_handler=lambda p, regs: 0))
    assert m.run(max_insns=BUDGET).reason is StopReason.HALTED
    for seed in ("1.5", "7"):
        assert native([path, seed]) in m.console
    assert restores.hits > 10


@pytest.mark.parametrize("libc", LIBCS)
def test_pipe_between_parent_and_child(build_program, libc):
    path = build_program("pipe", libc)
    m = run_programs(Program(path, ["pipe"]))
    assert program_output(m.console) == native([path])
    assert "parent read 64000 bytes" in m.console


@pytest.mark.parametrize("libc", LIBCS)
def test_realloc_of_a_large_block(build_program, libc):
    path = build_program("realloc", libc)
    m = run_programs(Program(path, ["realloc"]))
    assert program_output(m.console) == native([path])
    assert "not implemented" not in m.console


def test_a_debian_library_libbz2(build_program):
    """Debian's libbz2 (libbz2-dev's static archive), which nobody here wrote: compress
    and decompress 30 KB.  glibc only: the archive is built with _FORTIFY_SOURCE, so it
    needs glibc's __fprintf_chk and does not link with musl."""
    import os

    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libbz2.a"):
        pytest.skip("libbz2-dev is not installed (Debian: apt-get install libbz2-dev)")
    path = build_program("bzip", "glibc", extra=("-lbz2",))
    m = run_programs(Program(path, ["bzip"]))
    out = program_output(m.console)
    assert out == native([path])
    assert "30000 bytes, identical" in out

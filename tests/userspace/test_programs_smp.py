"""Programs on two CPUs (the kernel built with CONFIG_SMP and CONFIG_USERSPACE).

Each CPU is a unicorn instance of its own: its own TSS, GDT, CR3 and translation cache,
and the clock counts its blocks in a table of its own (two address spaces may hold
different code at one virtual address).  New tasks are spread over the CPUs when forked,
so a parent and its child, or two programs, run on different CPUs.  What a program
writes must not depend on that: byte for byte the native output, and the 1-CPU run's.
"""
from __future__ import annotations

import pytest

from test_programs import BUDGET, native
from userprogs import LIBCS, program_output
from kprobe_shell import Machine, Program, StopReason


def run_on(cpus: int, *programs: Program, **kw) -> Machine:
    m = Machine(programs=list(programs), cpus=cpus, **kw)
    event = m.run(max_insns=BUDGET)
    assert event.reason is StopReason.HALTED, m.describe_stop(event)
    return m


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("name, args", [
    ("hello", ["one", "two words", ""]),
    ("memory", []),
    ("pipe", []),
    ("forkexec", ["/bin/forkexec-LIBC"]),
])
def test_two_cpus_give_the_native_and_the_one_cpu_output(build_program, libc, name, args):
    path = build_program(name, libc)
    args = [a.replace("LIBC", libc) for a in args]
    prog = Program(path, [f"{name}-{libc}", *args])
    two = run_on(2, prog)
    assert "smp: 2 cpus online\n" in two.console
    out = program_output(two.console)
    assert out == program_output(run_on(1, prog).console)
    assert out == native([path, *[path if a.startswith("/bin/") else a for a in args]])
    assert f"init: reaped pid 2 ({name}-{libc}), exit code 0\n" in two.console


def test_the_children_run_on_the_other_cpu(build_program):
    """forkexec's children are forked on its CPU and scheduled on the other one."""
    from kprobe_shell import Kprobe

    path = build_program("forkexec", "glibc")
    m = Machine(programs=[Program(path, ["forkexec", "/bin/forkexec-glibc"])], cpus=2)
    cpus = set()
    m.register_kprobe(Kprobe(symbol_name="do_exit", pre_handler=lambda p, regs: cpus.add(m.cpu.index) or 0))
    assert m.run(max_insns=BUDGET).reason is StopReason.HALTED
    assert cpus == {0, 1}


def test_programs_at_once_on_two_cpus_same_bytes_twice(build_program):
    """Several programs, two linked at the same address, one with children, on two CPUs:
    each prints what it prints natively; the same command gives the same bytes and count."""
    hello, memory = build_program("hello", "glibc"), build_program("memory", "musl")
    forkexec = build_program("forkexec", "glibc")
    progs = [Program(hello, ["hello", "x"]), Program(memory, ["memory"]),
             Program(forkexec, ["forkexec", "/bin/forkexec-glibc"]), Program(hello, ["hello", "y"])]
    a, b = run_on(2, *progs), run_on(2, *progs)
    assert (a.console, a.retired) == (b.console, b.retired)
    assert "argv[1] = x\n" in a.console and "argv[1] = y\n" in a.console
    assert "longjmp back with 42\n" in a.console and "exec child exited with 5\n" in a.console
    assert a.console.count(", exit code 0\n") == 4


def test_fpu_state_on_two_cpus(build_program):
    """Lazy FPU switching is per CPU (CR0.TS, the task that last used it)."""
    path = build_program("fpu", "glibc", extra=("-lm",))
    progs = [Program(path, ["fpu", seed]) for seed in ("1.5", "7", "2", "9")]
    m = run_on(2, *progs, timer_period=700)
    for seed in ("1.5", "7", "2", "9"):
        assert native([path, seed]) in m.console


def test_the_shell_runs_programs_on_two_cpus(build_program):
    """`set cpus 2` then `exec`: no refusal any more; the SMP user-space kernel boots."""
    import io

    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session

    s = Session(output=Output(io.StringIO(), color=False))
    for line in ("set cpus 2", f"exec {build_program('hello', 'glibc')} two", "run"):
        s.execute(line)
    assert s.image_path.endswith("minikernel-smp-user.elf")
    assert "smp: 2 cpus online\n" in s.machine.console and "argv[1] = two\n" in s.machine.console

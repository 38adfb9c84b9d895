"""Processes: a real vfork (the parent waits until the child execs or exits; the child runs
on the parent's memory), posix_spawn through clone/clone3 with CLONE_VM|CLONE_VFORK,
orphans adopted and reaped by init, and threads refused the way unknown system calls are:
-ENOSYS, reported once per call, named."""
from __future__ import annotations

import pytest

from userprogs import LIBCS, program_output
from test_programs import native, run_programs
from kprobe_shell import Kprobe, Machine, Program, StopReason


@pytest.mark.parametrize("libc", LIBCS)
def test_vfork_shares_memory_and_suspends_the_parent(build_program, libc):
    path = build_program("vfork", libc)
    m = Machine(programs=[Program(path, [f"vfork-{libc}", f"/bin/vfork-{libc}"])])
    waits = m.register_kprobe(Kprobe(symbol_name="wait_for_completion", pre_handler=lambda p, regs: 0))
    assert m.run(max_insns=200_000_000).reason is StopReason.HALTED
    out = program_output(m.console)
    assert out == native([path, path])
    assert "after vfork + _exit: shared = 42, status 3\n" in out
    assert "posix_spawn child exited 7\n" in out
    assert waits.hits == 3  # vfork twice, posix_spawn once
    assert "not implemented" not in m.console


def test_threads_are_reported_once_per_call(build_program):
    """glibc's pthread_create tries clone3, then clone: each is refused and named once, for
    the whole machine (as unknown system calls are), however many programs ask."""
    path = build_program("threads", "glibc", extra=("-pthread",))
    m = run_programs(Program(path, ["threads"]), Program(path, ["threads-again"]))
    for call in ("clone3", "clone"):
        assert m.console.count(f"]: {call}(CLONE_VM|CLONE_THREAD): threads are not supported (-ENOSYS)\n") == 1
    assert m.console.count("main goes on\n") == 2
    assert "init: reaped pid 3 (threads-glibc), exit code 0\n" in m.console


@pytest.mark.parametrize("libc", LIBCS)
def test_orphans_go_on_and_init_reaps_them(build_program, libc):
    """The orphan writes after init reaped its parent (init prints only its own programs);
    the unreaped grandchild and the orphan are reaped silently, and the machine halts."""
    path = build_program("orphan", libc)
    m = run_programs(Program(path, ["orphan"]))
    tail = m.console[m.console.index(" -> pid 2\n") + len(" -> pid 2\n"):m.console.index("minikernel: all tasks reaped")]
    reaped = f"init: reaped pid 2 (orphan-{libc}), exit code 0\n"
    assert tail.count("init: reaped") == 1 and tail.index(reaped) < tail.index("orphan: my parent")
    assert tail.replace(reaped, "") == native([path])

"""The bad-access hooks of a machine running programs leave the user RAM and the files
area alone: a hook there would keep every store of the programs on unicorn's slow path
(see bad_access_ranges in machine/traps.py)."""
from __future__ import annotations

import pytest

from kprobe_shell import Machine, Program, StopReason
from kprobe_shell.machine.traps import bad_access_ranges
from kprobe_shell.machine.userspace import FILES_BASE, RAM_BASE


@pytest.mark.parametrize("cpus", [1, 2])
def test_no_hook_on_user_ram_on_any_cpu(build_program, cpus):
    path = build_program("hello", "glibc")
    m = Machine(programs=[Program(path, ["hello"])], cpus=cpus)
    expected = bad_access_ranges(m.uc.mem_regions())
    for cpu in m.cpus:
        covered = m.traps.covered(cpu)
        assert covered == expected
        for address in (RAM_BASE, RAM_BASE + m.userspace.ram_size - 1, FILES_BASE):
            assert not any(first <= address <= last for first, last, _kind in covered)
    assert m.run(max_insns=100_000_000).reason is StopReason.HALTED

"""A timer tick lands on the same guest instruction however the clock stops inside a block.

A tick due in the middle of a translated block is reached in one of two ways (see
InstructionClock.split_block): the next block is limited to the instructions before the
tick (QEMU's cflags_next_tb, kept in its cache), or the whole block is dropped from the
cache and run again with `until` at the tick.  The first is the machine's; the second is
the reference: every tick of a real program and of the bundled workload, on 1 and 2 CPUs,
must land at the same clock and rip with both, and the output and the counts must agree.
"""
from __future__ import annotations

import os

import pytest

from test_programs import BUDGET
from kprobe_shell import Machine, Program, StopReason
from kprobe_shell.machine import clock


def run_logged(limited: bool, monkeypatch, **kw) -> tuple[list, str, list, bool]:
    """(ticks as (cpu, clock, rip), console, final clocks, whether the limited split was
    in use) of a run to the end."""
    monkeypatch.setattr(clock, "LIMITED_SPLIT", limited)
    m = Machine(**kw)
    log = []
    deliver = m.interrupts.deliver

    def record(vector):
        log.append((m.cpu.index, m.cpu.icount.retired, m.rip))
        return deliver(vector)

    m.interrupts.deliver = record
    event = m.run(max_insns=BUDGET)
    assert event.reason is StopReason.HALTED, m.describe_stop(event)
    in_use = any(c.clock.next_block_limit not in (None, clock._UNRESOLVED) for c in m.cpus)
    return log, m.console, [c.icount.retired for c in m.cpus], in_use


def assert_same_ticks(monkeypatch, **kw) -> None:
    limited = run_logged(True, monkeypatch, **kw)
    reference = run_logged(False, monkeypatch, **kw)
    assert limited[3], "the limited split is not in use with this unicorn: nothing compared"
    assert not reference[3]
    assert len(limited[0]) > 100
    assert limited[:3] == reference[:3]


@pytest.mark.parametrize("cpus", [1, 2])
def test_a_real_programs_ticks_land_on_the_same_instructions(build_program, monkeypatch, cpus):
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libbz2.a"):
        pytest.skip("libbz2-dev is not installed (Debian: apt-get install libbz2-dev)")
    path = build_program("bzip", "glibc", extra=("-lbz2",))
    assert_same_ticks(monkeypatch, programs=[Program(path, ["bzip"])], cpus=cpus)


@pytest.mark.parametrize("cpus", [1, 2])
def test_the_bundled_workloads_ticks_land_on_the_same_instructions(monkeypatch, cpus):
    assert_same_ticks(monkeypatch, cpus=cpus, timer_period=1000)

"""A timer tick lands on the same guest instruction however the machine gets there.

A tick due in the middle of a translated block is reached in one of two ways (see
InstructionClock.split_block): the next block is limited to the instructions before the
tick (QEMU's cflags_next_tb, kept in its cache), or the whole block is dropped from the
cache and run again with `until` at the tick.  A user-mode tick is delivered by the
clock's block hook without leaving emu_start, or by the machine after emu_start returns
(Interrupts.timer_tick).  The first of each is the machine's; the second is the
reference: every tick of a real program and of the bundled workload, on 1 and 2 CPUs,
must land at the same clock and rip with both, and the output and the counts must agree.
"""
from __future__ import annotations

import ctypes
import os

import pytest

from test_programs import BUDGET
from tick_log import tick_log
from kprobe_shell import Machine, Program, StopReason
from kprobe_shell.machine import clock, userspace

LOG_CAP = 100_000


def run_logged(fast: bool, monkeypatch, **kw) -> tuple[list, str, list, tuple[bool, int]]:
    """(ticks as (cpu, clock, rip) in order, console, final clocks, (whether the limited
    split was in use, how many ticks the block hook delivered)) of a run to the end."""
    monkeypatch.setattr(clock, "LIMITED_SPLIT", fast)
    monkeypatch.setattr(userspace, "USER_TICKS_IN_HOOK", fast)
    m = Machine(**kw)
    log = tick_log(m)
    hook_logs = [(ctypes.c_uint64 * (2 * LOG_CAP))() for _ in m.cpus]
    for cpu, buf in zip(m.cpus, hook_logs):
        cpu.icount.tick_log, cpu.icount.tick_log_cap = ctypes.addressof(buf), LOG_CAP
    event = m.run(max_insns=BUDGET)
    assert event.reason is StopReason.HALTED, m.describe_stop(event)
    in_hook = 0
    for cpu, buf in zip(m.cpus, hook_logs):
        assert cpu.icount.tick_log_len < LOG_CAP
        in_hook += cpu.icount.tick_log_len
        log += [(cpu.index, buf[2 * i], buf[2 * i + 1]) for i in range(cpu.icount.tick_log_len)]
    in_use = any(c.clock.next_block_limit not in (None, clock._UNRESOLVED) for c in m.cpus)
    # A CPU's clock only grows: its ticks sorted by clock are its ticks in order.
    return sorted(log), m.console, [c.icount.retired for c in m.cpus], (in_use, in_hook)


def assert_same_ticks(monkeypatch, user_ticks: bool, **kw) -> None:
    fast = run_logged(True, monkeypatch, **kw)
    reference = run_logged(False, monkeypatch, **kw)
    assert fast[3][0], "the limited split is not in use with this unicorn: nothing compared"
    assert (fast[3][1] > 100) == user_ticks and reference[3] == (False, 0)
    assert len(fast[0]) > 100
    assert fast[:3] == reference[:3]


@pytest.mark.parametrize("cpus", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_real_programs_ticks_land_on_the_same_instructions(build_program, monkeypatch, cpus):
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libbz2.a"):
        pytest.skip("libbz2-dev is not installed (Debian: apt-get install libbz2-dev)")
    path = build_program("bzip", "glibc", extra=("-lbz2",))
    assert_same_ticks(monkeypatch, True, programs=[Program(path, ["bzip"])], cpus=cpus)


@pytest.mark.parametrize("cpus", [1, 2])
def test_the_bundled_workloads_ticks_land_on_the_same_instructions(monkeypatch, cpus):
    assert_same_ticks(monkeypatch, False, cpus=cpus, timer_period=1000)

"""The SMP machine: N CPUs on shared memory, round-robin quanta, the SMP kernel on them.

The bundled kernel's SMP build (minikernel-smp.elf) brings up every CPU the machine has
and spreads its tasks over them.  Runs must be deterministic to the byte, every task's
own lines must be in the console, every CPU must have its own `current` and timer, and a
run cut into pieces must interleave exactly as one that never stopped.
"""
from __future__ import annotations

import re

import pytest
from unicorn import x86_const as X

from kprobe_shell import Machine, StopReason
from kprobe_shell.images import BUNDLED_SMP_KERNEL, bundled_image_path
from kprobe_shell.machine.smp import CpuState

TASK_TAGS = ("[opener1]", "[opener2]", "[netd]", "[execer]", "[hello]", "[quitter]")


def task_lines(console: str, tag: str) -> list[str]:
    return [line for line in console.splitlines() if line.startswith(tag)]


@pytest.fixture(scope="module")
def up_run():
    m = Machine()
    assert m.run().reason is StopReason.HALTED
    return m


@pytest.fixture(scope="module", params=[2, 4])
def smp_run(request):
    m = Machine(cpus=request.param)
    assert m.run().reason is StopReason.HALTED
    return m


def test_one_cpu_is_unchanged(up_run):
    # The UP kernel on the one-CPU machine: the figures the README and the ABI quote.
    assert up_run.ncpus == 1 and up_run.retired == 1_144_051
    assert up_run.console.endswith("minikernel: all tasks reaped, halting\n")


def test_smp_kernel_on_one_cpu_runs_the_same_workload(up_run):
    m = Machine(bundled_image_path(BUNDLED_SMP_KERNEL), cpus=1)
    assert m.run().reason is StopReason.HALTED
    assert "x86_64 SMP, 1 of 4 cpus" in m.console
    for tag in TASK_TAGS:
        assert task_lines(m.console, tag) == task_lines(up_run.console, tag)


def test_every_cpu_comes_up_and_parks(smp_run):
    n = smp_run.ncpus
    console = smp_run.console
    assert f"x86_64 SMP, {n} of 4 cpus" in console
    for cpu in range(1, n):
        assert f"smp: cpu {cpu} called in" in console
    assert f"smp: {n} cpus online" in console
    assert [c.state for c in smp_run.cpus] == [CpuState.PARKED] * n
    assert console.endswith("minikernel: all tasks reaped, halting\n")


def test_each_task_prints_what_it_prints_on_one_cpu(smp_run, up_run):
    # The interleaving differs from one CPU; each task's own lines, in its own order, do not.
    for tag in TASK_TAGS:
        assert task_lines(smp_run.console, tag) == task_lines(up_run.console, tag), tag
    reaped = sorted(re.findall(r"init: reaped pid (\d+) \((\w+)\), exit code (\d+)", smp_run.console))
    assert reaped == sorted(re.findall(r"init: reaped pid (\d+) \((\w+)\), exit code (\d+)", up_run.console))


def test_runs_are_deterministic(smp_run):
    again = Machine(cpus=smp_run.ncpus)
    again.run()
    assert again.console == smp_run.console
    assert [c.icount.retired for c in again.cpus] == [c.icount.retired for c in smp_run.cpus]


def test_a_run_cut_into_budgets_interleaves_as_one_run(smp_run):
    m = Machine(cpus=smp_run.ncpus)
    stops = 0
    while True:
        event = m.run(max_insns=7_919)  # not a multiple of the quantum or the timer period
        if event.reason is StopReason.HALTED:
            break
        assert event.reason is StopReason.BUDGET
        stops += 1
    assert stops > 50
    assert m.console == smp_run.console
    assert [c.icount.retired for c in m.cpus] == [c.icount.retired for c in smp_run.cpus]


def test_tasks_are_spread_and_each_cpu_has_its_own_current_and_timer():
    m = Machine(cpus=2)
    pda = m.symbols["cpu_pda"].address
    ticks = {cpu: 0 for cpu in range(2)}
    for cpu in range(2):
        def tick(_m, cpu=cpu):
            assert _m.cpu_id == cpu
            ticks[cpu] += 1
        m.add_code_hook(m.symbols["timer_interrupt"].address, tick, cpus=[cpu])
    seen_on = {0: set(), 1: set()}
    while m.run(max_insns=3_001).reason is StopReason.BUDGET:
        for cpu in m.cpus:
            if cpu.state is not CpuState.ONLINE:
                continue
            task = m.tasks.read_task(m.smp.cpu_current_task(cpu.index))
            assert task is not None
            # current is this CPU's: %gs points at its own cpu_pda, and it runs only its tasks
            assert cpu.uc.reg_read(X.UC_X86_REG_GS_BASE) == pda + 32 * cpu.index
            assert task.cpu == cpu.index
            seen_on[cpu.index].add(task.comm)
    assert {"opener1", "netd", "quitter"} <= seen_on[1]
    assert {"init", "opener2"} <= seen_on[0]
    # Each CPU has its own timer (no tick is delivered to two CPUs) ...
    assert ticks[0] > 100 and ticks[1] > 100
    for cpu in m.cpus:
        assert ticks[cpu.index] <= cpu.icount.retired // m.timer_period
    # ... and only the boot CPU's ticks advance jiffies, as do_timer() in Linux.
    assert m.read_u64(m.symbols["jiffies"].address) == ticks[0]


def test_a_user_image_on_two_cpus_runs_on_the_boot_cpu():
    from pathlib import Path

    hello = str(Path(bundled_image_path()).parent.parent / "examples" / "hello.elf")
    one, two = Machine(hello), Machine(hello, cpus=2)
    assert one.run().reason is StopReason.HALTED
    assert two.run().reason is StopReason.HALTED
    assert two.console == one.console
    assert two.cpus[1].state is CpuState.WAIT_FOR_SIPI  # nobody sent it a startup IPI


def test_cpu_count_is_checked():
    from kprobe_shell import MachineError

    with pytest.raises(MachineError):
        Machine(cpus=5)
    with pytest.raises(MachineError):
        Machine(cpus=0)


def test_clock_state_and_fast_hooks_are_per_cpu():
    """Each CPU's clock hook has its own struct icount (counter, deadline) but the same
    detour byte map and tool-code callbacks; the C register accessors act on the CPU that
    runs (or last ran); a fast code hook outside the tool's pages is on every CPU."""
    import ctypes

    m = Machine(cpus=2)
    ics = [c.icount for c in m.cpus]
    assert ctypes.addressof(ics[0]) != ctypes.addressof(ics[1])
    # The engine's booster (and, once optimizing, the detour entries) is on every CPU's clock.
    assert ics[0].n_tool_hooks == ics[1].n_tool_hooks >= 1
    assert [h.cb for h in ics[0].tool_hooks[:ics[0].n_tool_hooks]] == \
        [h.cb for h in ics[1].tool_hooks[:ics[1].n_tool_hooks]]
    counted = m.count_in_detours(*_detour_range())
    assert ics[0].counted == ics[1].counted == ctypes.addressof(counted)
    # A fast hook on a text address: every call, on whichever CPU makes it.
    addr = m.symbols["_spin_lock_irqsave"].address
    seen = []
    m.add_fast_code_hook(addr, addr, lambda a: seen.append((a, m.cpu_id)))
    by_cpu = {i: 0 for i in range(2)}

    def count(_m):
        by_cpu[m.cpu_id] += 1

    m.add_code_hook(addr, count)
    while m.run(max_insns=5_000).reason is StopReason.BUDGET:
        # The accessors read the current CPU's registers, not always CPU 0's.
        assert m.registers() == m.cpus[m.cpu_id].registers()
        assert m.retired == m.cpu.icount.retired
    assert by_cpu[0] > 0 and by_cpu[1] > 0
    assert len(seen) == sum(by_cpu.values())
    assert {cpu for _a, cpu in seen} == {0, 1}
    assert all(a == addr for a, _cpu in seen)


def _detour_range():
    from kprobe_shell.machine.layout import DETOUR_BASE, DETOUR_END

    return DETOUR_BASE, DETOUR_END - DETOUR_BASE

"""A probe on every instruction of every function changes nothing the guest can see.

Every instruction boundary the engine accepts gets a probe (pre and post no-op handlers:
single-stepped; in auto mode pre only, so that whatever may be boosted is).  The run
must give the unprobed run's console, clock and data memory byte for byte, every
probe's hits must equal an independent count of that instruction's executions (the
machine's own code hooks on an unprobed run), and the engine's invariants must hold.
"""
from __future__ import annotations

import pytest

from harness import count_executions, data_pages, instruction_boundaries, snapshot
from kprobe_shell import Kprobe, Machine, ProbeError, StopReason

MODES = ["single-step", "boost", "optimize", "auto"]
#: How far the kernel runs under all its probes (the whole boot, the smoke and fix-up
#: self-tests, forks, dozens of ticks and context switches at the period below).
KERNEL_BUDGET = 90_000
KERNEL_TIMER_PERIOD = 997


def noop_pre(p, regs):
    return 0


def noop_post(p, regs, flags):
    pass


def probe_everything(m: Machine, mode: str):
    m.kprobes.set_mode(mode)
    probes, refused = {}, {}
    post = noop_post if mode == "single-step" else None
    for addr in instruction_boundaries(m):
        kp = Kprobe(addr=addr, pre_handler=noop_pre, post_handler=post)
        try:
            m.register_kprobe(kp)
        except ProbeError as exc:
            refused[addr] = str(exc)
        else:
            probes[addr] = kp
    return probes, refused


def check_probed_run(m: Machine, probes: dict, counts: dict, ref_snapshot, ref_data, mode: str):
    assert m.console == ref_snapshot.console
    assert m.retired == ref_snapshot.retired
    assert data_pages(m) == ref_data
    wrong = {hex(a): (p.hits, counts[a]) for a, p in probes.items() if p.hits != counts[a]}
    assert wrong == {}
    assert sum(p.hits for p in probes.values()) > 0.99 * m.retired
    assert all(p.nmissed == 0 and p.faults == 0 for p in probes.values())
    assert m.kprobes.check_invariants() == []
    assert m.kprobes.current_kprobe is None
    boosted = sum(1 for p in probes.values() if p.mode == "boost")
    optimized = sum(1 for p in probes.values() if p.mode == "optimized")
    if mode == "single-step":
        assert boosted == optimized == 0
    else:
        assert boosted + optimized > len(probes) // 2
    if mode in ("single-step", "boost"):
        assert optimized == 0
    else:
        # With a probe on every instruction, a jump fits only over one instruction of at
        # least 5 bytes (any longer range would cover the next probe): those are optimized.
        assert optimized > 0


# ---------------------------------------------------------------------------- a user image
@pytest.fixture(scope="module")
def workload(build_guest):
    return build_guest("workload")


@pytest.fixture(scope="module")
def workload_reference(workload):
    m = Machine(workload)
    counts = count_executions(m, instruction_boundaries(m))
    assert m.run().reason is StopReason.HALTED
    assert sum(counts.values()) == m.retired  # every instruction is in some function
    return snapshot(m), data_pages(m), counts


@pytest.mark.parametrize("mode", MODES)
def test_every_instruction_of_a_user_image(workload, workload_reference, mode):
    ref, ref_data, counts = workload_reference
    m = Machine(workload)
    probes, refused = probe_everything(m, mode)
    # Only the hlt that ends _start is refused.
    hlt = m.symbols["_start"].end - 1
    assert list(refused) == [hlt] and "is hlt" in refused[hlt]
    assert len(probes) == len(counts) - 1 > 300
    ev = m.run()
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    check_probed_run(m, probes, counts, ref, ref_data, mode)
    # Whole state, registers and stack included, text read without the int3s.
    assert snapshot(m).diff(ref) == []
    # Unregistering everything restores every byte.
    for kp in probes.values():
        m.unregister_kprobe(kp)
    assert m.guest_memory() == ref.memory
    # Only the engine's own trampoline probe (a nop in the machine's stub page) is left.
    assert m.kprobes.planted() == {m.kprobes.kretprobes.trampoline: 0x90}
    assert m.kprobes.all_probes() == []
    assert m.kprobes.check_invariants() == []


def test_every_instruction_in_pieces(workload, workload_reference):
    """Stopping and resuming a heavily probed run anywhere changes nothing either."""
    ref, ref_data, counts = workload_reference
    m = Machine(workload)
    probes, _ = probe_everything(m, "single-step")
    for budget in (1, 2, 3, 50, 333, 1000):
        ev = m.run(budget)
        assert ev.reason is StopReason.BUDGET
        assert m.kprobes.current_kprobe is None
    assert m.run().reason is StopReason.HALTED
    check_probed_run(m, probes, counts, ref, ref_data, "single-step")


# ---------------------------------------------------------------------------- the bundled kernel
@pytest.fixture(scope="module")
def kernel_reference(kernel_path):
    m = Machine(timer_period=KERNEL_TIMER_PERIOD)
    counts = count_executions(m, instruction_boundaries(m), ranged=True)
    ev = m.run(KERNEL_BUDGET)
    assert ev.reason is StopReason.BUDGET
    assert sum(counts.values()) == m.retired == KERNEL_BUDGET
    tasks = [(t.pid, t.comm, t.state) for t in m.tasks.all()]
    assert len(tasks) > 3  # the run got as far as forking the workload
    return snapshot(m), data_pages(m), counts, tasks


# Auto mode (optimized, boosted and single-stepped probes side by side) runs by default;
# each mode alone is a longer run.
@pytest.mark.parametrize("mode", [m if m == "auto" else pytest.param(m, marks=pytest.mark.slow) for m in MODES])
def test_every_instruction_of_the_kernel(kernel_reference, mode):
    ref, ref_data, counts, tasks = kernel_reference
    m = Machine(timer_period=KERNEL_TIMER_PERIOD)
    probes, refused = probe_everything(m, mode)
    # What the engine refuses: hlt, its own trampoline, and jprobe_return.
    jr = m.symbols["jprobe_return"]
    for addr, why in refused.items():
        if jr.address <= addr < jr.end:
            assert "jprobe_return cannot be probed" in why
        elif addr == m.symbols["kretprobe_trampoline"].address:
            assert "kretprobe_trampoline cannot be probed" in why
        else:
            assert m.read(addr, 1) == b"\xf4" and "is hlt" in why, why
    assert len(refused) < 30 and len(probes) > 5000
    ev = m.run(KERNEL_BUDGET)
    assert ev.reason is StopReason.BUDGET, m.describe_stop(ev)
    assert "smoke_test: kprobe_target(0x9e3779b9) = 0x34bd2893" in m.console
    assert "fixup: 11/11 passed" in m.console
    check_probed_run(m, probes, counts, ref, ref_data, mode)
    assert [(t.pid, t.comm, t.state) for t in m.tasks.all()] == tasks

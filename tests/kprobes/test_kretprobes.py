"""Return probes on a recursive user function (tests/guests/kret.c).

main calls rec(4) three times; rec(n) = rec(n - 1) + n through a real (non-tail) call,
so each outer call nests 5 frames (rec(4) .. rec(0)) and returns 0, 1, 3, 6, 10.
"""
from __future__ import annotations

import pytest

from harness import STACK_BYTES, execution_clocks, snapshot
from kprobe_shell import Kprobe, Kretprobe, Machine, StopReason
from kprobe_shell.machine.layout import RESERVED_END
from kprobe_shell.machine.tasks import PSEUDO_TASK_ADDR

OUTER_CALLS = 3
DEPTH = 5  # rec(4) .. rec(0)
RETURNS = [0, 1, 3, 6, 10]  # innermost first
MODES = ["single-step", "boost", "optimize", "auto"]


@pytest.fixture(scope="module")
def kret_path(build_guest):
    return build_guest("kret")


@pytest.fixture(scope="module")
def ref(kret_path):
    m = Machine(kret_path)
    assert m.run().reason is StopReason.HALTED
    assert m.console.count("rec=0xa\n") == OUTER_CALLS
    return snapshot(m)


@pytest.fixture
def m(kret_path):
    return Machine(kret_path)


def same_as_unprobed(m, ref) -> bool:
    """The state equals the unprobed run's, except in dead stack below rsp where a
    replaced return address still holds the trampoline's address (with the kretprobe
    booster of auto/optimize mode, the real return address is put back: no difference)."""
    snap = snapshot(m)
    diff = [d for d in snap.diff(ref) if not d.startswith("stack differs")]
    assert diff == []
    tramp = m.kprobes.kretprobes.trampoline.to_bytes(8, "little")
    base = RESERVED_END - STACK_BYTES
    for off in range(0, STACK_BYTES, 8):
        mine, theirs = snap.stack[off:off + 8], ref.stack[off:off + 8]
        if mine != theirs:
            assert mine == tramp and m.kprobes.mode in ("single-step", "boost"), hex(base + off)
            assert base + off < m.reg("rsp"), hex(base + off)
    return True


def site(m, addr):
    """'rec' or 'main': the function a return address is in."""
    return m.symbols.containing(addr)[0].name


@pytest.mark.parametrize("mode", MODES)
def test_handler_fires_once_per_return_in_lifo_order(m, ref, mode):
    m.kprobes.set_mode(mode)
    tramp = m.kprobes.kretprobes.trampoline
    seen = []

    def handler(ri, regs):
        seen.append({
            "rax": regs.rax, "ret": ri.ret_addr, "task": ri.task, "slot": ri.stack_slot,
            "rip": regs.rip, "rsp": regs.rsp,
        })

    rp = Kretprobe("rec", handler)
    m.register_kretprobe(rp)
    assert m.run().reason is StopReason.HALTED
    assert rp.hits == len(seen) == OUTER_CALLS * DEPTH and rp.nmissed == 0
    assert [s["rax"] for s in seen] == RETURNS * OUTER_CALLS
    for call in range(OUTER_CALLS):
        frames = seen[call * DEPTH:(call + 1) * DEPTH]
        # Innermost first: the deepest stack slot returns first.
        assert [f["slot"] for f in frames] == sorted(f["slot"] for f in frames)
        assert [site(m, f["ret"]) for f in frames] == ["rec"] * (DEPTH - 1) + ["main"]
        assert len({f["ret"] for f in frames[:-1]}) == 1  # the recursive call's return site
    for f in seen:
        assert f["task"] == PSEUDO_TASK_ADDR
        # The handler runs at the trampoline's int3 (rip is past it, as the trap leaves
        # it, like any pre_handler's), or in auto/optimize mode in the kretprobe booster,
        # which shows rip = &kretprobe_trampoline as the kernel's booster does; the
        # return address is already popped.
        assert f["rip"] == (tramp if mode in ("auto", "optimize") else tramp + 1)
        assert f["rsp"] == f["slot"] + 8
    assert same_as_unprobed(m, ref)
    assert m.kprobes.kretprobes.instances_by_task() == []
    assert len(rp.free_instances) == rp.maxactive == 10
    assert m.kprobes.check_invariants() == []


def test_two_kretprobes_on_one_function(m, ref):
    tramp = m.kprobes.kretprobes.trampoline
    log = []
    first = Kretprobe("rec", lambda ri, regs: log.append(("first", regs.rax, ri.ret_addr)))
    second = Kretprobe("rec", lambda ri, regs: log.append(("second", regs.rax, ri.ret_addr)))
    m.register_kretprobe(first)
    m.register_kretprobe(second)
    assert m.run().reason is StopReason.HALTED
    assert first.hits == second.hits == OUTER_CALLS * DEPTH
    # The newest kprobe runs first at entry, so `second` records the real return address
    # and `first` finds the trampoline already there; at the return the newest instance
    # (first's) is handled first, then second's, which holds the real address.
    assert len(log) == 2 * OUTER_CALLS * DEPTH
    for i in range(0, len(log), 2):
        (n1, rax1, ret1), (n2, rax2, ret2) = log[i], log[i + 1]
        assert (n1, n2) == ("first", "second")
        assert rax1 == rax2
        assert ret1 == m.kprobes.kretprobes.booster and ret2 != tramp  # auto mode: the booster
    assert [rax for n, rax, _ in log if n == "second"] == RETURNS * OUTER_CALLS
    assert same_as_unprobed(m, ref)
    assert m.kprobes.check_invariants() == []


@pytest.mark.parametrize("maxactive,hits,returns", [(1, 1, [10]), (2, 2, [6, 10]), (5, 5, RETURNS)])
def test_maxactive_limits_instances_in_flight(m, ref, maxactive, hits, returns):
    seen = []
    rp = Kretprobe("rec", lambda ri, regs: seen.append(regs.rax), maxactive=maxactive)
    m.register_kretprobe(rp)
    assert rp.maxactive == maxactive
    assert m.run().reason is StopReason.HALTED
    assert rp.nmissed == OUTER_CALLS * (DEPTH - maxactive)
    assert rp.hits == OUTER_CALLS * hits
    assert seen == returns * OUTER_CALLS  # the outermost calls are the traced ones
    assert same_as_unprobed(m, ref)


def test_default_maxactive(m):
    rp = Kretprobe("rec", lambda ri, regs: None)
    assert rp.maxactive == 10  # max(10, 2 * NR_CPUS) with preemption
    m.register_kretprobe(rp)
    m.run()
    assert rp.nmissed == 0


def instances_at_the_deepest_call(m, kret_path):
    """Run to just after the probe on rec(0)'s entry fired, in the first outer call."""
    plain = Machine(kret_path)
    clocks = execution_clocks(plain, plain.symbols["rec"].address)
    plain.run()
    assert len(clocks) == OUTER_CALLS * DEPTH
    assert m.run(clocks[DEPTH - 1]).reason is StopReason.BUDGET


def test_instances_in_flight_are_listed_newest_first(m, kret_path):
    rp = Kretprobe("rec", lambda ri, regs: None)
    m.register_kretprobe(rp)
    instances_at_the_deepest_call(m, kret_path)
    table = m.kprobes.kretprobes.instances_by_task()
    assert len(table) == 1
    _bucket, task, ris = table[0]
    assert task == PSEUDO_TASK_ADDR
    assert len(ris) == DEPTH == len(rp.used_instances)
    assert [ri.stack_slot for ri in ris] == sorted(ri.stack_slot for ri in ris)  # newest (deepest) first
    for ri in ris:  # the return address was replaced (auto mode: by the kretprobe booster's)
        assert m.read_u64(ri.stack_slot) == m.kprobes.kretprobes.booster
    krm = m.kprobes.kretprobes
    assert krm.real_return_address(task, 0) == ris[0].ret_addr
    assert site(m, krm.real_return_address(task, DEPTH - 1)) == "main"
    assert krm.real_return_address(task, DEPTH) is None
    assert m.kprobes.check_invariants() == []


@pytest.mark.parametrize("mode", MODES)
def test_unregister_with_instances_in_flight(m, ref, kret_path, mode):
    m.kprobes.set_mode(mode)
    calls = []
    rp = Kretprobe("rec", lambda ri, regs: calls.append(regs.rax))
    m.register_kretprobe(rp)
    instances_at_the_deepest_call(m, kret_path)
    assert calls == [] and len(rp.used_instances) == DEPTH
    in_flight = list(rp.used_instances)
    m.unregister_kretprobe(rp)
    assert all(ri.rp is None for ri in in_flight)
    assert rp.free_instances == [] and rp.used_instances == []
    # The calls in flight return normally through the trampoline, without a handler.
    assert m.run().reason is StopReason.HALTED
    assert calls == []
    assert rp.hits == 0
    assert m.console == ref.console
    assert same_as_unprobed(m, ref)
    assert m.kprobes.kretprobes.instances_by_task() == []
    assert m.kprobes.check_invariants() == []


def test_flushed_instances_make_the_trampoline_a_bug(m, kret_path):
    """Instances recycled while their functions still run (2005's flush on exec): the
    return reaches the trampoline with none left, the kernel's BUG_ON; the machine
    stops with StopReason.BUG naming the task."""
    rp = Kretprobe("rec", lambda ri, regs: None)
    m.register_kretprobe(rp)
    instances_at_the_deepest_call(m, kret_path)
    flushed = m.kprobes.kretprobes.kprobe_flush_task(PSEUDO_TASK_ADDR)
    assert flushed == DEPTH
    assert len(rp.free_instances) == rp.maxactive
    ev = m.run()
    assert ev.reason is StopReason.BUG and ev.is_final
    assert "kretprobe_trampoline" in ev.message and "kret-1" in ev.message
    assert "no return-probe instance" in ev.message


def test_entry_handler_passes_data_to_the_return_handler(m, ref):
    pairs = []

    def entry(ri, regs):
        ri.data["args"] = (regs.rdi, regs.rsi)

    def handler(ri, regs):
        a, b = ri.data["args"]
        pairs.append((a, b, regs.rax))

    m.register_kretprobe(Kretprobe("leaf", handler, entry_handler=entry))
    m.run()
    assert pairs == [(i, 5, 3 * i + 5) for i in range(OUTER_CALLS)]
    assert same_as_unprobed(m, ref)


def test_kretprobe_and_kprobe_on_the_same_entry(m, ref):
    kp = Kprobe(symbol_name="rec", pre_handler=lambda p, regs: 0, post_handler=lambda p, regs, f: None)
    rets = []
    rp = Kretprobe("rec", lambda ri, regs: rets.append(regs.rax))
    m.register_kprobe(kp)
    m.register_kretprobe(rp)
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == rp.hits == OUTER_CALLS * DEPTH
    assert rets == RETURNS * OUTER_CALLS
    assert same_as_unprobed(m, ref)

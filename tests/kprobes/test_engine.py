"""The probe engine's behaviour: aggregates, handlers that take over, disable/enable,
unregistering mid-run, refusals, handler errors and their policies, jprobes, re-entry.

Guest: tests/guests/engine.c.  step_fn(x) = (x + 1) * 2, called for x = 0..9; the probes
sit on its `add $1, %rax` (p_add, 4 bytes), followed by p_after.  jtarget(a, b) is called
4 times; j_handler is its guest-resident jprobe handler.
"""
from __future__ import annotations

import pytest

from harness import execution_clocks, snapshot
from kprobe_shell.api import AggrKprobe
from kprobe_shell import (
    HandlerError,
    Jprobe,
    Kprobe,
    Kretprobe,
    Machine,
    ProbeError,
    StopReason,
)

MODES = ["single-step", "boost", "optimize", "auto"]
STEP_CALLS = 10
JCALLS = 4


@pytest.fixture
def m(engine_path):
    return Machine(engine_path)


def addr_of(m, name):
    return m.symbols[name].address


def armed(m, name):
    return m.read(addr_of(m, name), 1) == b"\xcc"


# ---------------------------------------------------------------------------- aggregates
@pytest.mark.parametrize("mode", MODES)
def test_aggregate_runs_pre_handlers_newest_first_and_every_post_handler(m, ref, mode):
    m.kprobes.set_mode(mode)
    log = []
    probes = []
    for name in "ABC":
        probes.append(Kprobe(
            symbol_name="p_add",
            pre_handler=lambda p, regs, n=name: log.append(("pre", n)) or 0,
            post_handler=lambda p, regs, flags, n=name: log.append(("post", n)),
            name=name,
        ))
        m.register_kprobe(probes[-1])
    entry = m.kprobes.get_kprobe(addr_of(m, "p_add"))
    assert isinstance(entry, AggrKprobe) and entry.children == probes[::-1]
    assert m.kprobes.all_probes() == probes  # registration order, managers hidden
    assert m.run().reason is StopReason.HALTED
    one_hit = [("pre", "C"), ("pre", "B"), ("pre", "A"), ("post", "C"), ("post", "B"), ("post", "A")]
    assert log == one_hit * STEP_CALLS
    assert [p.hits for p in probes] == [STEP_CALLS] * 3
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.check_invariants() == []


@pytest.mark.parametrize("mode", MODES)
def test_pre_handler_that_takes_over_stops_the_rest_and_the_step(m, ref, mode):
    """The newest child emulates the add and sets rip past it, returning 1: the older
    children's pre handlers and every post handler are skipped, no single-step, and the
    guest's results are unchanged.  Every hit is a hit (the probe does not stay
    'running' after it returned 1)."""
    m.kprobes.set_mode(mode)
    after = addr_of(m, "p_after")
    calls = []

    def emulate(p, regs):
        calls.append(regs.rip)
        regs.rax = regs.rax + 1
        regs.rip = after
        return 1

    older = Kprobe(symbol_name="p_add", pre_handler=lambda p, r: calls.append("older") or 0,
                   post_handler=lambda p, r, f: calls.append("post"))
    taker = Kprobe(symbol_name="p_add", pre_handler=emulate,
                   post_handler=lambda p, r, f: calls.append("post"))
    m.register_kprobe(older)
    m.register_kprobe(taker)
    other = Kprobe(symbol_name="p_after")
    m.register_kprobe(other)
    assert m.run().reason is StopReason.HALTED
    assert calls == [addr_of(m, "p_add") + 1] * STEP_CALLS
    assert taker.hits == STEP_CALLS and taker.nmissed == 0
    assert older.hits == 0 and older.nmissed == 0
    assert other.hits == STEP_CALLS and other.nmissed == 0
    assert m.kprobes.current_kprobe is None
    assert snapshot(m).diff(ref) == []


def test_pre_handler_that_skips_the_instruction_changes_the_result(m):
    """Taking over without emulating really skips the add: the guest computes x * 2."""
    after = addr_of(m, "p_after")

    def skip(p, regs):
        regs.rip = after
        return 1

    kp = Kprobe(symbol_name="p_add", pre_handler=skip)
    m.register_kprobe(kp)
    m.run()
    assert m.console.startswith("".join(f"s=0x{2 * x:x}\n" for x in range(STEP_CALLS)))
    assert kp.hits == STEP_CALLS


def test_unregister_one_child_keeps_the_others(m, ref):
    log = []
    a, b, c = (Kprobe(symbol_name="p_add", pre_handler=lambda p, r, n=n: log.append(n) or 0) for n in "abc")
    for p in (a, b, c):
        m.register_kprobe(p)
    addr = addr_of(m, "p_add")
    original = m.image.symbol_bytes(m.symbols["step_fn"])[3:4]
    m.unregister_kprobe(b)
    assert not b.registered and a.registered and c.registered
    assert armed(m, "p_add")
    assert m.kprobes.get_kprobe(addr).children == [c, a]
    assert m.run().reason is StopReason.HALTED
    assert log == ["c", "a"] * STEP_CALLS
    assert (a.hits, b.hits, c.hits) == (STEP_CALLS, 0, STEP_CALLS)
    m.unregister_kprobe(c)
    assert armed(m, "p_add")
    slots_before = dict(m.kprobes.slots.owner)
    m.unregister_kprobe(a)  # the last one: the address is disarmed, the entry and slot go
    assert m.read(addr, 1) == original
    assert m.kprobes.get_kprobe(addr) is None
    assert len(m.kprobes.slots.owner) == len(slots_before) - 1
    assert m.kprobes.check_invariants() == []
    assert snapshot(m).diff(ref) == []
    with pytest.raises(ProbeError, match="not registered"):
        m.unregister_kprobe(a)


def test_single_probe_unregister_restores_the_byte_and_reuses_the_slot(m):
    addr = addr_of(m, "p_add")
    kp = Kprobe(symbol_name="p_add")
    m.register_kprobe(kp)
    slot = kp.slot
    assert m.read(addr, 1) == b"\xcc"
    assert m.kprobes.planted()[addr] == 0x48
    assert m.kprobes.original_bytes(addr, 4) == bytes.fromhex("4883c001")
    m.unregister_kprobe(kp)
    assert m.read(addr, 4) == bytes.fromhex("4883c001")
    assert addr not in m.kprobes.planted()
    again = Kprobe(symbol_name="p_after")
    m.register_kprobe(again)
    assert again.slot == slot  # slots are reused after unregister


def test_at_most_one_jprobe_per_address(m):
    m.register_jprobe(Jprobe("jtarget", "j_handler"))
    with pytest.raises(ProbeError, match="at most one jprobe"):
        m.register_jprobe(Jprobe("jtarget", lambda a, b: None))
    assert m.kprobes.check_invariants() == []


# ---------------------------------------------------------------------------- disable / enable
@pytest.mark.parametrize("mode", MODES)
def test_disable_and_enable_keep_counters_and_rearm(m, ref, engine_path, mode):
    m.kprobes.set_mode(mode)
    plain = Machine(engine_path)
    clocks = execution_clocks(plain, addr_of(plain, "p_add"))
    plain.run()
    assert len(clocks) == STEP_CALLS
    kp = Kprobe(symbol_name="p_add")
    m.register_kprobe(kp)
    m.run(clocks[2])  # three hits
    assert kp.hits == 3
    m.disable_probe(kp)
    assert kp.disabled and not armed(m, "p_add")
    assert m.kprobes.check_invariants() == []
    m.run(clocks[6] - m.retired)  # four runs with the probe disabled
    assert kp.hits == 3
    m.enable_probe(kp)
    assert not kp.disabled and armed(m, "p_add")
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == 3 + 3
    assert kp.registered
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.check_invariants() == []


def test_disable_one_child_of_an_aggregate(m, ref):
    a = Kprobe(symbol_name="p_add")
    b = Kprobe(symbol_name="p_add")
    m.register_kprobe(a)
    m.register_kprobe(b)
    m.disable_probe(a)
    assert armed(m, "p_add")
    m.run()
    assert (a.hits, b.hits) == (0, STEP_CALLS)
    m2 = Machine(m.image)
    c, d = Kprobe(symbol_name="p_add"), Kprobe(symbol_name="p_add")
    m2.register_kprobe(c)
    m2.register_kprobe(d)
    m2.disable_probe(c)
    m2.disable_probe(d)
    assert not armed(m2, "p_add")  # every child disabled: the address is disarmed
    m2.enable_probe(d)
    assert armed(m2, "p_add")
    m2.run()
    assert (c.hits, d.hits) == (0, STEP_CALLS)
    assert snapshot(m2).diff(ref) == []


def test_disable_a_jprobe_and_a_kretprobe(m, ref):
    jp = Jprobe("jtarget", "j_handler")
    rp = Kretprobe("jtarget", lambda ri, regs: None)
    m.register_jprobe(jp)
    m.register_kretprobe(rp)
    m.disable_probe(jp)
    m.disable_probe(rp)
    assert not armed(m, "jtarget")
    m.run()
    assert jp.hits == 0 and rp.hits == 0
    assert m.read_u64(addr_of(m, "jcount")) == 0
    assert snapshot(m).diff(ref) == []


# ---------------------------------------------------------------------------- unregister mid-run
@pytest.mark.parametrize("mode", MODES)
def test_unregister_while_armed_mid_run(m, ref, engine_path, mode):
    m.kprobes.set_mode(mode)
    plain = Machine(engine_path)
    clocks = execution_clocks(plain, addr_of(plain, "p_add"))
    plain.run()
    kp = Kprobe(symbol_name="p_add", pre_handler=lambda p, r: 0)
    rp = Kretprobe("step_fn", lambda ri, regs: None)
    m.register_kprobe(kp)
    m.register_kretprobe(rp)
    assert m.run(clocks[4]).reason is StopReason.BUDGET
    assert kp.hits == 5 and rp.hits == 4  # stopped inside the fifth call
    assert len(rp.used_instances) == 1
    m.unregister_kprobe(kp)
    m.unregister_kretprobe(rp)
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == 5 and rp.hits == 4
    assert m.console == ref.console
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.kretprobes.instances_by_task() == []
    assert m.kprobes.check_invariants() == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_post", [False, True])
def test_unregister_after_a_stop_between_the_trap_and_the_step(m, ref, mode, with_post):
    """A handler stopped the guest (policy 'stop') after the int3, before the copy ran:
    unregistering then must not leave the CPU in a freed slot."""
    m.kprobes.set_mode(mode)
    m.kprobes.handler_error_policy = "stop"

    def boom(p, regs):
        raise RuntimeError("stop here")

    kp = Kprobe(symbol_name="p_add", pre_handler=boom,
                post_handler=(lambda p, r, f: None) if with_post else None)
    m.register_kprobe(kp)
    ev = m.run()
    assert ev.reason is StopReason.HANDLER
    m.unregister_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.check_invariants() == []


# ---------------------------------------------------------------------------- refusals
def refused(m, probe, *needles, register=None):
    before = m.guest_memory()
    with pytest.raises(ProbeError) as info:
        (register or m.register)(probe)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    assert not probe.registered
    assert m.kprobes.all_probes() == []
    assert m.guest_memory() == before
    assert m.kprobes.check_invariants() == []
    return str(info.value)


def test_refuses_an_offset_inside_an_instruction(m):
    step = m.symbols["step_fn"]
    # step_fn: mov (3 bytes) at +0, add (4 bytes) at +3, shl at +7.
    for off in (1, 2):
        refused(m, Kprobe("step_fn", off), f"step_fn+0x{off:x} is not an instruction boundary",
                "nearest: step_fn+0x0, step_fn+0x3")
    for off in (4, 5, 6):
        refused(m, Kprobe("step_fn", off), "nearest: step_fn+0x3, step_fn+0x7")
    refused(m, Kprobe(addr=step.address + 5), "not an instruction boundary")
    # The boundaries themselves are fine.
    for off in (0, 3, 7):
        kp = Kprobe("step_fn", off)
        m.register_kprobe(kp)
        m.unregister_kprobe(kp)
    assert m.kprobes.instruction_boundaries(step.address)[:4] == [
        step.address, step.address + 3, step.address + 7, step.address + 10,
    ]


def test_refuses_the_kretprobe_trampoline(m):
    tramp = m.kprobes.kretprobes.trampoline
    refused(m, Kprobe(addr=tramp), "cannot be probed")


def test_refuses_jprobe_return(m):
    jr = m.symbols["jprobe_return"]
    refused(m, Kprobe("jprobe_return"), "jprobe_return cannot be probed")
    for off in m.kprobes.instruction_boundaries(jr.address):
        refused(m, Kprobe(addr=off), "jprobe_return cannot be probed")


def test_refuses_a_slot_page_address(m):
    kp = Kprobe(symbol_name="p_add")
    m.register_kprobe(kp)
    for addr in (kp.slot, kp.slot + 4):
        with pytest.raises(ProbeError, match="instruction slot page"):
            m.register_kprobe(Kprobe(addr=addr))
    assert m.kprobes.all_probes() == [kp]


def test_refuses_addresses_outside_text(m):
    refused(m, Kprobe("some_data"), "outside the image's text")
    refused(m, Kprobe("out"), "outside the image's text")
    refused(m, Kprobe(addr=0x10), "outside the image's text")
    refused(m, Kprobe(addr=0x20000000), "outside the image's text")


def test_refuses_an_unknown_symbol_with_suggestions(m):
    msg = refused(m, Kprobe("stepfn"), "no symbol 'stepfn'", "did you mean")
    assert "step_fn" in msg
    refused(m, Jprobe("jtarget", "j_handlr"), "did you mean", "j_handler", register=m.register_jprobe)
    refused(m, Kretprobe("jtargte", lambda ri, regs: None), "did you mean", "jtarget")


def test_refuses_hlt(m):
    start = m.symbols["_start"]
    hlt = start.end - 1
    assert m.read(hlt, 1) == b"\xf4"
    refused(m, Kprobe(addr=hlt), "is hlt")


def test_refuses_double_registration_and_misplaced_entry_probes(m):
    kp = Kprobe(symbol_name="p_add")
    m.register_kprobe(kp)
    with pytest.raises(ProbeError, match="already registered"):
        m.register_kprobe(kp)
    with pytest.raises(ProbeError, match="entry"):
        m.register_kretprobe(Kretprobe(addr=addr_of(m, "p_add")))
    with pytest.raises(ProbeError, match="entry"):
        m.register_jprobe(Jprobe(addr=addr_of(m, "p_add"), entry=lambda *a: None))
    with pytest.raises(ProbeError, match="needs symbol_name or addr"):
        Kprobe()
    assert m.kprobes.all_probes() == [kp]


# ---------------------------------------------------------------------------- handler errors
def failing_pre(p, regs):
    raise ZeroDivisionError("handler bug")


@pytest.mark.parametrize("mode", MODES)
def test_handler_exception_is_reported_and_the_guest_goes_on(m, ref, mode):
    m.kprobes.set_mode(mode)
    events = []
    m.kprobes.listeners.append(events.append)
    kp = Kprobe(symbol_name="p_add", pre_handler=failing_pre)
    m.register_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    errors = [e for e in events if isinstance(e, HandlerError)]
    assert len(errors) == STEP_CALLS == kp.faults == kp.hits
    err = errors[0]
    assert err.probe is kp and err.handler == "pre_handler"
    assert isinstance(err.exception, ZeroDivisionError)
    assert err.where.startswith(__file__) and ":" in err.where
    assert "ZeroDivisionError: handler bug" in str(err)
    assert snapshot(m).diff(ref) == []


def test_post_and_return_handler_exceptions_are_charged_to_their_probe(m, ref):
    events = []
    m.kprobes.listeners.append(events.append)

    def bad_post(p, regs, flags):
        raise KeyError("post")

    def bad_ret(ri, regs):
        raise ValueError("ret")

    kp = Kprobe(symbol_name="p_after", post_handler=bad_post)
    rp = Kretprobe("jtarget", bad_ret)
    m.register_kprobe(kp)
    m.register_kretprobe(rp)
    assert m.run().reason is StopReason.HALTED
    assert kp.faults == STEP_CALLS and rp.faults == JCALLS
    assert {(e.handler, type(e.exception)) for e in events} == {("post_handler", KeyError), ("handler", ValueError)}
    assert snapshot(m).diff(ref) == []


@pytest.mark.parametrize("mode", MODES)
def test_handler_error_policy_stop(m, ref, mode):
    m.kprobes.set_mode(mode)
    m.kprobes.handler_error_policy = "stop"
    kp = Kprobe(symbol_name="p_add", pre_handler=failing_pre)
    m.register_kprobe(kp)
    ev = m.run()
    assert ev.reason is StopReason.HANDLER and not ev.is_final
    assert "pre_handler" in ev.message and "ZeroDivisionError: handler bug" in ev.message
    assert kp.faults == 1
    assert m.console == ""
    # Going on steps the probed instruction and stops at the next failure.
    stops = 1
    while m.run().reason is StopReason.HANDLER:
        stops += 1
    assert stops == STEP_CALLS == kp.faults
    assert m.halted
    assert snapshot(m).diff(ref) == []


@pytest.mark.parametrize("mode", MODES)
def test_handler_error_policy_disable(m, ref, mode):
    m.kprobes.set_mode(mode)
    m.kprobes.handler_error_policy = "disable"
    kp = Kprobe(symbol_name="p_add", pre_handler=failing_pre)
    ok = Kprobe(symbol_name="p_after")
    m.register_kprobe(kp)
    m.register_kprobe(ok)
    assert m.run().reason is StopReason.HALTED
    assert kp.disabled and kp.registered
    assert kp.hits == 1 and kp.faults == 1
    assert not armed(m, "p_add")
    assert ok.hits == STEP_CALLS and not ok.disabled
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.check_invariants() == []


# ---------------------------------------------------------------------------- jprobes
@pytest.mark.parametrize("mode", MODES)
def test_guest_jprobe_handler_sees_the_arguments(m, ref, mode):
    m.kprobes.set_mode(mode)
    jp = Jprobe("jtarget", "j_handler")
    m.register_jprobe(jp)
    assert m.run().reason is StopReason.HALTED
    assert jp.hits == JCALLS and jp.nmissed == 0 and jp.faults == 0
    assert m.read_u64(addr_of(m, "jcount")) == JCALLS
    # The last call is jtarget(3 + 3, 2 * 3 + 1).
    assert (m.read_u64(addr_of(m, "jseen_a")), m.read_u64(addr_of(m, "jseen_b"))) == (6, 7)
    # The probed function ran normally; the handler's instructions are off the clock.
    assert m.console == ref.console
    assert m.retired == ref.retired
    assert m.registers() == ref.registers
    assert m.kprobes.current_kprobe is None
    assert m.kprobes.check_invariants() == []


def test_python_jprobe_handler_gets_the_arguments(m, ref):
    got = []
    m.register_jprobe(Jprobe("jtarget", lambda a, b: got.append((a, b))))
    m.run()
    assert got == [(i + 3, 2 * i + 1) for i in range(JCALLS)]
    assert snapshot(m).diff(ref) == []


def test_probe_hit_inside_a_jprobe_handler_is_missed(m, ref):
    """While the guest jprobe handler runs, its probe is running: a kprobe hit there
    calls no handler and counts nmissed; the instruction is still stepped."""
    jp = Jprobe("jtarget", "j_handler")
    inner_calls = []
    inner = Kprobe(symbol_name="j_handler", pre_handler=lambda p, r: inner_calls.append(1) or 0)
    m.register_jprobe(jp)
    m.register_kprobe(inner)
    assert m.run().reason is StopReason.HALTED
    assert inner_calls == [] and inner.hits == 0 and inner.nmissed == JCALLS
    assert jp.hits == JCALLS
    assert m.read_u64(addr_of(m, "jcount")) == JCALLS
    assert m.console == ref.console
    assert m.kprobes.check_invariants() == []


def test_kprobe_and_guest_jprobe_on_one_function(m, ref):
    order = []
    jp = Jprobe("jtarget", "j_handler")
    kp = Kprobe(symbol_name="jtarget", pre_handler=lambda p, r: order.append("k") or 0,
                post_handler=lambda p, r, f: order.append("post"))
    m.register_jprobe(jp)
    m.register_kprobe(kp)
    entry = m.kprobes.get_kprobe(addr_of(m, "jtarget"))
    assert entry.children == [kp, jp.kp]  # the jprobe goes last
    assert m.run().reason is StopReason.HALTED
    assert order == ["k", "post"] * JCALLS
    assert jp.hits == kp.hits == JCALLS
    assert m.read_u64(addr_of(m, "jcount")) == JCALLS
    assert m.console == ref.console


# ---------------------------------------------------------------------------- on the kernel
def test_kernel_refusals(kernel):
    m = kernel
    refused(m, Kprobe("kretprobe_trampoline"), "kretprobe_trampoline cannot be probed")
    refused(m, Kprobe("jprobe_return"), "jprobe_return cannot be probed")
    jr_end = m.symbols["jprobe_return_end"].address
    refused(m, Kprobe(addr=jr_end - 1), "jprobe_return cannot be probed")  # its int3
    idle = m.symbols["cpu_idle"]
    hlts = [a for a in m.kprobes.instruction_boundaries(idle.address) if m.read(a, 1) == b"\xf4"]
    assert hlts
    refused(m, Kprobe(addr=hlts[0]), "is hlt")
    refused(m, Kprobe("do_frok"), "did you mean", "do_fork")
    refused(m, Kprobe("smoke_rand1"), "outside the image's text")
    refused(m, Kretprobe("sys_execve", lambda ri, regs: None), "refusing a return probe on sys_execve",
            register=m.register_kretprobe)


def test_kernel_handler_sees_the_current_task(kernel):
    m = kernel
    seen = []
    m.register_kprobe(Kprobe("kprobe_target", pre_handler=lambda p, regs: seen.append(regs.task) or 0))
    m.run(60_000)
    assert len(seen) == 1
    task = seen[0]
    assert (task.pid, task.comm) == (1, "init")
    assert [(t.pid, t.comm) for t in m.tasks.all() if t.address == task.address] == [(1, "init")]
    assert [t.pid for t in m.tasks.all()][:2] == [0, 1]

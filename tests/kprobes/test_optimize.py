"""Jump-optimized probes (the kernel's optprobes) and the kretprobe booster.

Guest: tests/guests/optimize.c, one function per case of the optimizer's checks; the
bundled kernel for the timer (ticks landing inside detour buffers), jprobes and mode
changes mid-workload.  Everything is compared with an unprobed run: console, clock,
registers and memory.
"""
from __future__ import annotations

import io

import pytest

from harness import count_executions, data_pages, execution_clocks, snapshot
from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine, StopReason
from kprobe_shell.machine.layout import DETOUR_BASE, DETOUR_END, RESERVED_END

MODES = ["single-step", "boost", "optimize", "auto"]
FUNCS = ["opt_plain", "opt_riprel", "opt_jump_into", "opt_call_near", "opt_indirect"]
CALLS = 20


@pytest.fixture(scope="module")
def opt_path(build_guest):
    return build_guest("optimize")


@pytest.fixture(scope="module")
def ref(opt_path):
    m = Machine(opt_path)
    counts = count_executions(m, [m.symbols[f].address for f in FUNCS])
    assert m.run().reason is StopReason.HALTED
    assert "sum=" in m.console
    return snapshot(m), counts


@pytest.fixture
def m(opt_path):
    return Machine(opt_path)


def addr_of(m, name):
    return m.symbols[name].address


def noop(p, regs):
    return 0


# ---------------------------------------------------------------------------- can_optimize
def test_what_is_optimized_and_why_not(m):
    m.kprobes.set_mode("optimize")
    kps = {f: m.register_kprobe(Kprobe(f, pre_handler=noop)) for f in FUNCS}
    assert kps["opt_plain"].mode == "optimized"
    op = m.kprobes.optimizer.active[addr_of(m, "opt_plain")]
    assert (op.length, len(op.insns)) == (8, 3)  # push, mov, lea: whole instructions
    assert m.read(op.addr, 1) == b"\xe9"
    assert kps["opt_riprel"].mode == "optimized"
    # Refused, with the reason kept on the probe; they fall back to the int3 path
    # (boosted where the first instruction allows it).
    why = {f: kps[f].optimize_refusal for f in FUNCS}
    assert "lands at opt_jump_into+0x2" in why["opt_jump_into"]
    assert kps["opt_jump_into"].mode == "boost"
    assert "call" in why["opt_call_near"] and "cannot run relocated" in why["opt_call_near"]
    assert "indirect jump" in why["opt_indirect"]
    assert why["opt_plain"] is None and why["opt_riprel"] is None


def test_post_and_fault_handlers_prevent_optimization(m):
    post = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop, post_handler=lambda p, r, f: None))
    assert post.mode == "single-step" and "post_handler" in post.optimize_refusal
    fault = m.register_kprobe(Kprobe("opt_riprel", pre_handler=noop, fault_handler=lambda p, r, t: 0))
    assert fault.mode == "single-step" and "fault_handler" in fault.optimize_refusal


def test_a_probe_inside_the_replaced_bytes_unoptimizes(m, ref):
    first = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop))
    assert first.mode == "optimized"
    inner = m.register_kprobe(Kprobe("opt_plain", 1, pre_handler=noop))  # the mov, inside the jump
    assert first.mode == "boost" and "another probe at opt_plain+0x1" in first.optimize_refusal
    # The first is an int3 probe again; the inner one has 7 bytes of whole instructions
    # of its own, with no probe inside: it is optimized.
    assert m.read(first.addr, 2) == b"\xcc\xe9" and inner.mode == "optimized"
    assert m.run().reason is StopReason.HALTED
    assert first.hits == inner.hits == CALLS
    m.unregister_kprobe(inner)
    assert first.mode == "optimized"  # nothing in the way any more


def test_boost_and_single_step_modes_never_optimize(m):
    for mode in ("boost", "single-step"):
        m.kprobes.set_mode(mode)
        kp = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop))
        assert kp.mode != "optimized" and kp.optimize_refusal == f"kprobe-mode is {mode}"
        m.unregister_kprobe(kp)


# ---------------------------------------------------------------------------- transparency
@pytest.mark.parametrize("mode", MODES)
def test_probed_run_equals_unprobed_run(m, ref, mode):
    snap, counts = ref
    m.kprobes.set_mode(mode)
    seen = {f: [] for f in FUNCS}
    kps = {f: m.register_kprobe(Kprobe(f, pre_handler=lambda p, regs, f=f: seen[f].append(regs.rip) or 0))
           for f in FUNCS}
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(snap) == []
    for f, kp in kps.items():
        assert kp.hits == counts[kp.addr] == len(seen[f])
        assert seen[f] == [kp.addr + 1] * kp.hits  # as after an int3, in every mode
    assert m.kprobes.check_invariants() == []
    for kp in kps.values():
        m.unregister_kprobe(kp)
    assert m.guest_memory() == snap.memory and m.kprobes.optimizer.active == {}


def test_disable_enable_unregister(m, ref):
    snap, _ = ref
    kp = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop))
    original = m.image.symbol_bytes(m.symbols["opt_plain"])  # the image's bytes
    text = lambda: m.read(kp.addr, len(original))  # noqa: E731
    assert kp.mode == "optimized" and text()[:1] == b"\xe9"
    m.disable_probe(kp)
    assert kp.mode != "optimized" and text() == original
    m.run(300)
    m.enable_probe(kp)
    assert kp.mode == "optimized"
    hits_before = kp.hits
    assert hits_before == 0
    assert m.run().reason is StopReason.HALTED
    assert 0 < kp.hits < CALLS  # the calls made while disabled were not seen
    assert m.console == snap.console
    m.unregister_kprobe(kp)
    assert text() == original
    assert m.guest_memory() == snap.memory
    assert m.kprobes.check_invariants() == []


def test_aggregate_on_an_optimized_address(m, ref):
    snap, counts = ref
    order = []
    a = m.register_kprobe(Kprobe("opt_plain", pre_handler=lambda p, r: order.append("a") or 0))
    b = m.register_kprobe(Kprobe("opt_plain", pre_handler=lambda p, r: order.append("b") or 0))
    assert a.mode == b.mode == "optimized"
    c = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop, post_handler=lambda p, r, f: order.append("post")))
    assert a.mode == "single-step"
    assert "post_handler" in m.kprobes.get_kprobe(a.addr).optimize_refusal
    m.unregister_kprobe(c)
    assert a.mode == "optimized"
    assert m.run().reason is StopReason.HALTED
    assert order == ["b", "a"] * CALLS  # newest first, as on the int3 path
    assert a.hits == b.hits == counts[a.addr]
    assert snapshot(m).diff(snap) == []


def test_a_handler_that_stops_the_guest_does_not_run_twice(m, ref):
    snap, counts = ref
    stops = []

    def stop_third(p, regs):
        if p.hits == 3:
            regs.machine.stop_guest(regs.machine.stop_event(StopReason.BREAKPOINT, "third hit"))
        return 0

    kp = m.register_kprobe(Kprobe("opt_plain", pre_handler=stop_third))
    assert kp.mode == "optimized"
    ev = m.run()
    stops.append(ev.reason)
    op = m.kprobes.optimizer.active[kp.addr]
    assert ev.reason is StopReason.BREAKPOINT and m.rip == op.buffer  # resumes in the copies
    assert "opt_plain+0x0" in m.describe_stop(ev)  # reported where the guest is
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == counts[kp.addr]
    assert snapshot(m).diff(snap) == []


def test_a_budget_stop_inside_the_detour_shows_the_guest_instruction(opt_path, m, ref):
    """A stop before the relocated copy of instruction 2 leaves the CPU where the guest's
    own instruction is (the jump goes back to an int3 until a later stop), with exactly the
    state of an unprobed run stopped at the same clock."""
    snap, counts = ref
    plain = Machine(opt_path)
    addr = addr_of(plain, "opt_plain")
    clocks = execution_clocks(plain, addr + 1)  # the mov, instruction 2 of the jump
    plain.run()
    k = clocks[4] - 1  # stop just before its 5th run
    inplace = Machine(opt_path)
    inplace.run(k)
    kp = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop))
    assert kp.mode == "optimized"
    ev = m.run(k)
    assert ev.reason is StopReason.BUDGET and ev.rip == m.rip == addr + 1
    assert snapshot(m).diff(snapshot(inplace)) == []
    assert kp.mode == "boost" and "stopped inside its replaced bytes" in kp.optimize_refusal
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == counts[addr]
    assert snapshot(m).diff(snap) == []


def test_detour_addresses_map_back_to_the_guest(m):
    kp = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop))
    op = m.kprobes.optimizer.active[kp.addr]
    assert DETOUR_BASE <= op.buffer < DETOUR_END
    assert [m.guest_address(c) for c in op.copies] == [kp.addr, kp.addr + 1, kp.addr + 4]
    assert m.guest_address(op.copies[-1] + 4) == kp.addr + op.length  # the jump back
    assert m.guest_address(op.entry) == kp.addr
    assert m.guest_address(kp.addr) == kp.addr


# ---------------------------------------------------------------------------- kretprobes, jprobes
@pytest.mark.parametrize("mode", MODES)
def test_kretprobe_entry_and_return(m, ref, mode):
    snap, counts = ref
    m.kprobes.set_mode(mode)
    seen = []
    rp = m.register_kretprobe(Kretprobe("opt_plain", lambda ri, regs: seen.append((regs.rax, regs.rip)) or 0))
    assert rp.mode == ("optimized" if mode in ("optimize", "auto") else "boost" if mode == "boost" else "single-step")
    assert m.run().reason is StopReason.HALTED
    assert rp.hits == len(seen) == CALLS and rp.nmissed == 0
    assert [rax for rax, _ in seen] == [(i + 1) * 3 for i in range(CALLS)]
    krm = m.kprobes.kretprobes
    assert {rip for _, rip in seen} == {krm.trampoline if mode in ("optimize", "auto") else krm.trampoline + 1}
    snap_now = snapshot(m)
    if mode in ("optimize", "auto"):
        # The booster puts the real return address back: even the dead stack is identical.
        assert snap_now.diff(snap) == []
    else:
        assert [d for d in snap_now.diff(snap) if not d.startswith("stack")] == []
    assert m.kprobes.check_invariants() == []


def test_probe_hit_inside_a_jprobe_handler_counts_nmissed(build_guest):
    m = Machine(build_guest("engine"))
    jp = m.register_jprobe(Jprobe("jtarget", "j_handler"))
    inner = m.register_kprobe(Kprobe("j_handler", pre_handler=lambda p, r: 1 / 0))
    assert jp.mode == "optimized" and inner.mode == "optimized"
    assert m.run().reason is StopReason.HALTED
    assert inner.hits == 0 and inner.nmissed == 4 and inner.faults == 0
    assert jp.hits == 4 and m.read_u64(addr_of(m, "jcount")) == 4
    assert "j=0x1f\nj=0x2b\nj=0x37\nj=0x43\n" in m.console


# ---------------------------------------------------------------------------- the kernel
KERNEL_TIMER_PERIOD = 101  # a tick every ~100 instructions: many land inside detours


def same_data_modulo_tool_addresses(m, ref) -> bool:
    """Data pages equal, except dead stack words where the probed run left a tool address
    standing for the guest's: the int3 trampoline a kretprobe planted (single-step and
    boost modes; the booster puts the real address back), or the rip of a timer tick
    that arrived in a detour buffer (its frame holds the relocated copy's address)."""
    mine, theirs = data_pages(m), data_pages(ref)
    assert mine.keys() == theirs.keys()
    krm = m.kprobes.kretprobes
    for page, data in mine.items():
        other = theirs[page]
        if data == other:
            continue
        for off in range(0, len(data), 8):
            a = int.from_bytes(data[off:off + 8], "little")
            b = int.from_bytes(other[off:off + 8], "little")
            if a == b or krm.is_trampoline(a) or (DETOUR_BASE <= a < DETOUR_END and m.guest_address(a) == b):
                continue
            raise AssertionError(f"0x{page + off:x}: 0x{a:x} != 0x{b:x}")
    return True


def entry_probes(m):
    probes = []
    for f in m.symbols.functions():
        try:
            probes.append(m.register_kprobe(Kprobe(addr=f.address, pre_handler=noop)))
        except Exception:  # noqa: BLE001 - hlt, the engine's own code: not probeable
            pass
    return probes


def test_kernel_ticks_inside_detours_change_nothing(kernel_path):
    ref = Machine(timer_period=KERNEL_TIMER_PERIOD)
    counts = count_executions(ref, [f.address for f in ref.symbols.functions()], ranged=True)
    m = Machine(timer_period=KERNEL_TIMER_PERIOD)
    probes = entry_probes(m)
    multi = [p for p in probes if p.mode == "optimized" and len(m.kprobes.optimizer.active[p.addr].insns) > 1]
    assert len(multi) > 20
    in_detour = []
    deliver = m.interrupts.deliver

    def spy(vector):
        if DETOUR_BASE <= m.rip < DETOUR_END:
            in_detour.append(m.rip)
        return deliver(vector)

    m.interrupts.deliver = spy
    for budget in (7_000, 13_001, 30_000, 50_000):
        a, b = ref.run(budget), m.run(budget)
        assert a.reason is b.reason is StopReason.BUDGET
        assert m.retired == ref.retired and m.rip == ref.rip and m.registers() == ref.registers()
        assert same_data_modulo_tool_addresses(m, ref)
    assert in_detour  # the interesting case happened
    assert {p.addr: p.hits for p in probes} == {p.addr: counts[p.addr] for p in probes}
    assert m.kprobes.check_invariants() == []


def test_mode_changes_while_stopped_mid_workload(kernel_path):
    """Switch kprobe-mode at every stop: console, clock and memory stay those of the
    unprobed run at every stop."""
    ref = Machine(timer_period=997)
    m = Machine(timer_period=997)
    probes = entry_probes(m)
    rps = [m.register_kretprobe(Kretprobe(name, lambda ri, regs: 0)) for name in ("do_fork", "sys_open", "schedule")
           if name in m.symbols]
    assert rps
    modes = ["auto", "single-step", "optimize", "boost"] * 3
    for i, mode in enumerate(modes):
        m.kprobes.set_mode(mode)
        a, b = ref.run(20_000 + 997 * i), m.run(20_000 + 997 * i)
        assert a.reason is b.reason, m.describe_stop(b)
        assert m.time_ns == ref.time_ns and m.console == ref.console
        assert m.registers() == ref.registers()
        assert same_data_modulo_tool_addresses(m, ref)
        assert m.kprobes.check_invariants() == []
    assert sum(p.hits for p in probes) > 1000 and sum(rp.hits for rp in rps) > 0


def test_shell_reports_the_mode_and_the_reason(kernel_path):
    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session

    buf = io.StringIO()
    session = Session(output=Output(stream=buf, color=False))
    session.execute("kprobe do_fork")
    session.execute("kprobe fx_call_rel32+4")
    session.execute("set kprobe-mode optimize")
    session.execute("probes")
    text = buf.getvalue()
    assert "not optimized: 'call" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line[:1].isdigit()}
    assert "optimized" in lines["1"] and "single-step" in lines["2"]
    session.execute("disas do_fork")
    assert "jmp planted (e9 over" in buf.getvalue()


def test_a_breakpoint_inside_the_replaced_bytes_unoptimizes(m, ref):
    snap, _ = ref
    kp = m.register_kprobe(Kprobe("opt_plain", pre_handler=noop))
    assert kp.mode == "optimized"
    reached = []
    handle = m.add_code_hook(kp.addr + 4, lambda mm: reached.append(mm.retired))  # the lea, inside the jump
    assert kp.mode == "boost" and "another probe at opt_plain+0x4" in kp.optimize_refusal
    assert m.run().reason is StopReason.HALTED
    assert len(reached) == kp.hits == CALLS
    m.remove_hook(handle)
    m.kprobes.optimizer.kprobe_optimizer()  # what the next run() does first
    assert kp.mode == "optimized"

"""The core differential test: a probe on an instruction of each fix-up class leaves the
guest exactly as an unprobed run leaves it (registers, memory, stack, console, clock),
in single-step mode and in auto mode (boosted where the engine may boost).

Each guest (tests/guests/fixup_*.c) runs the instruction several times with varied
inputs; PROBE(label) marks the instruction.
"""
from __future__ import annotations

import pytest

from harness import count_executions, execution_clocks, snapshot
from kprobe_shell import Kprobe, Machine, StopReason
from kprobe_shell.machine.layout import EFLAGS_IF, EFLAGS_TF

# (guest, label, expected executions, rip after the step: "slot" = relative to the slot
# (the engine must move it back), "abs" = already absolute, boostable in auto mode)
CASES = [
    ("fixup_riprel", "p_load", 6, "slot", True),
    ("fixup_riprel", "p_store", 6, "slot", True),
    ("fixup_riprel", "p_store_imm", 6, "slot", True),
    ("fixup_riprel", "p_cmp_imm8", 6, "slot", True),
    ("fixup_riprel", "p_add_mem", 6, "slot", True),
    ("fixup_riprel", "p_lea", 6, "slot", True),
    ("fixup_call", "p_call", 5, "slot", False),
    ("fixup_callind", "p_call_reg", 4, "abs", False),
    ("fixup_callind", "p_call_table", 4, "abs", False),
    ("fixup_callind", "p_call_riprel", 4, "abs", False),
    ("fixup_jmpind", "p_jmp_table", 6, "abs", False),
    ("fixup_jmpind", "p_jmp_reg", 6, "abs", False),
    ("fixup_ret", "p_ret16", 5, "abs", False),
    ("fixup_ret", "p_repret", 5, "abs", False),
    ("fixup_ret", "p_ret", 5, "abs", False),
    ("fixup_ret", "p_lret", 5, "abs", False),
    ("fixup_flags", "p_pushf", 4, "slot", False),
    ("fixup_flags", "p_popf", 10, "slot", False),
    ("fixup_flags", "p_cli", 2, "slot", False),
    ("fixup_flags", "p_sti", 2, "slot", False),
    ("fixup_iret", "p_iret", 5, "abs", False),
    ("fixup_jumps", "p_jcc8", 8, "slot", False),
    ("fixup_jumps", "p_jcc32", 8, "slot", False),
    ("fixup_jumps", "p_jmp8", 8, "slot", False),
    ("fixup_jumps", "p_jmp32", 8, "slot", False),
    ("fixup_jumps", "p_jcc_back", 20, "slot", False),
]
IDS = [label for _g, label, *_ in CASES]
MODES = ["single-step", "boost", "optimize", "auto"]


def expected_mode(mode: str, boostable: bool, kp) -> str:
    """The mechanism a probe on the case's instruction gets in each kprobe-mode."""
    if mode == "single-step" or not boostable:
        return "single-step"
    if mode == "boost":
        return "boost"
    # optimize/auto: jump-optimized unless the optimizer says why not (then boosted).
    return "boost" if kp.optimize_refusal else "optimized"

_reference_cache: dict = {}


def reference(path: str):
    """The unprobed run of a guest: its final snapshot and, per address, how often it ran."""
    if path not in _reference_cache:
        m = Machine(path)
        labels = [s for s in m.symbols if s.name.startswith("p_")]
        assert labels
        counts = count_executions(m, [s.address for s in labels])
        ev = m.run()
        assert ev.reason is StopReason.HALTED, ev
        _reference_cache[path] = (snapshot(m), counts)
    return _reference_cache[path]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("guest,label,runs,rip_kind,boostable", CASES, ids=IDS)
def test_probed_run_equals_unprobed_run(build_guest, guest, label, runs, rip_kind, boostable, mode):
    path = build_guest(guest)
    ref, counts = reference(path)
    m = Machine(path)
    m.kprobes.set_mode(mode)
    addr = m.symbols[label].address
    assert counts[addr] == runs  # the guest does what the table says
    seen = []
    kp = Kprobe(symbol_name=label, pre_handler=lambda p, regs: seen.append(regs.rip) or 0)
    m.register_kprobe(kp)
    assert kp.addr == addr
    assert kp.mode == expected_mode(mode, boostable, kp), kp.optimize_refusal
    assert m.read(addr, 1) == (b"\xe9" if kp.mode == "optimized" else b"\xcc")  # armed: jmp or int3

    ev = m.run()
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    assert kp.hits == runs == len(seen)
    assert seen == [addr + 1] * runs  # the pre_handler sees the trap's rip (after int3)
    assert kp.nmissed == 0 and kp.faults == 0
    assert m.kprobes.check_invariants() == []
    assert m.kprobes.current_kprobe is None
    # Whole state, text read as the guest would see it without the int3.
    assert snapshot(m).diff(ref) == []
    # And with the probe gone, memory is byte-identical, text included.
    m.unregister_kprobe(kp)
    assert m.read(addr, 1) != b"\xcc" and not m.kprobes.optimizer.active
    assert m.guest_memory() == ref.memory
    assert m.kprobes.check_invariants() == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("guest,label,runs,rip_kind,boostable", CASES, ids=IDS)
def test_state_right_after_one_probed_instance_equals_in_place_execution(
    build_guest, guest, label, runs, rip_kind, boostable, mode
):
    """Stop both machines at the same clock value, right after the k-th run of the probed
    instruction: the clock is exact and a probe does not move it, so the states agree."""
    path = build_guest(guest)
    plain = Machine(path)
    addr = plain.symbols[label].address
    clocks = execution_clocks(plain, addr)
    plain.run()
    assert len(clocks) == runs
    nth = runs // 2
    k = clocks[nth]  # the clock includes the instruction itself

    inplace = Machine(path)
    assert inplace.run(k).reason is StopReason.BUDGET

    m = Machine(path)
    m.kprobes.set_mode(mode)
    kp = Kprobe(symbol_name=label)
    m.register_kprobe(kp)
    ev = m.run(k)
    assert ev.reason is StopReason.BUDGET
    assert m.retired == inplace.retired == k
    assert kp.hits == nth + 1
    assert m.kprobes.current_kprobe is None  # not stopped half-way through a step
    assert snapshot(m).diff(snapshot(inplace)) == []
    # The rest of the run is unaffected by having stopped there.
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(reference(path)[0]) == []


@pytest.mark.parametrize("guest,label,runs,rip_kind,boostable", CASES, ids=IDS)
def test_post_handler_sees_the_stepped_state_before_the_fixup(build_guest, guest, label, runs, rip_kind, boostable):
    """A post_handler runs after the copy executed and before resume_execution: every
    general register is already what in-place execution gives, rip is the slot's (for
    relative kinds) or already absolute, and TF is set / IF cleared by the step."""
    path = build_guest(guest)
    plain = Machine(path)
    addr = plain.symbols[label].address
    clocks = execution_clocks(plain, addr)
    plain.run()
    after = []
    for k in clocks:
        stopped = Machine(path)
        stopped.run(k)
        after.append(stopped.registers())

    m = Machine(path)
    captured = []
    kp = Kprobe(symbol_name=label, post_handler=lambda p, regs, flags: captured.append((m.registers(), flags)))
    m.register_kprobe(kp)
    assert kp.mode == "single-step"
    assert m.run().reason is StopReason.HALTED
    assert len(captured) == runs
    for (regs, flags), want in zip(captured, after):
        assert flags == 0
        for name in want:
            if name not in ("rip", "eflags"):
                assert regs[name] == want[name], name
        assert regs["eflags"] & EFLAGS_TF or label in ("p_popf", "p_iret")
        assert regs["eflags"] & ~(EFLAGS_TF | EFLAGS_IF) == want["eflags"] & ~(EFLAGS_TF | EFLAGS_IF)
        if rip_kind == "slot":
            assert kp.addr + (regs["rip"] - kp.slot) == want["rip"]
        else:
            assert regs["rip"] == want["rip"]


def test_call_pushes_the_original_return_address(build_guest):
    """The callee records the return address it finds on its stack: the original's."""
    path = build_guest("fixup_call")
    for mode in MODES:
        m = Machine(path)
        m.kprobes.set_mode(mode)
        m.register_kprobe(Kprobe(symbol_name="p_call"))
        m.run()
        ret = m.symbols["p_call"].address + 5
        table = m.symbols["callee_ret"].address
        assert [m.read_u64(table + 8 * i) for i in range(5)] == [ret] * 5
        assert f"ret=0x{ret:x}\n" in m.console


def test_indirect_calls_push_the_original_return_address(build_guest):
    """The 2005 x86_64 code tested the opcode byte, not ModRM, for ff /2: the return
    address of an indirect call pointed into the slot.  Not here."""
    path = build_guest("fixup_callind")
    for label, length in (("p_call_reg", 2), ("p_call_table", 7), ("p_call_riprel", 6)):
        m = Machine(path)
        m.register_kprobe(Kprobe(symbol_name=label))
        m.run()
        ret = m.symbols[label].address + length
        table = m.symbols["last_ret"].address
        rets = [m.read_u64(table + 8 * i) for i in range(12)]
        assert rets.count(ret) == 4, label
        assert all(not (0x40000000 <= r < 0x41000000) for r in rets)


def test_pushf_does_not_leak_tf_or_if(build_guest):
    path = build_guest("fixup_flags")
    m = Machine(path)
    m.register_kprobe(Kprobe(symbol_name="p_pushf"))
    m.run()
    pushed = [m.read_u64(m.symbols["out"].address + 8 * i) for i in range(4)]
    assert [bool(v & EFLAGS_IF) for v in pushed] == [False, True, False, True]
    assert [bool(v & 1) for v in pushed] == [False, False, True, True]  # CF from bt
    assert not any(v & EFLAGS_TF for v in pushed)


@pytest.mark.parametrize("label", ["p_popf", "p_cli", "p_sti", "p_iret"])
def test_if_modifiers_leave_if_as_the_instruction_set_it(build_guest, label):
    guest = "fixup_iret" if label == "p_iret" else "fixup_flags"
    path = build_guest(guest)
    ref, _ = reference(path)
    m = Machine(path)
    kp = Kprobe(symbol_name=label)
    m.register_kprobe(kp)
    flags_seen = []
    # The flags right after each probed instance, as the guest resumes with them.
    addr = m.symbols[label].address
    plain = Machine(path)
    clocks = execution_clocks(plain, addr)
    plain.run()
    for k in clocks:
        assert m.run(k - m.retired).reason is StopReason.BUDGET
        flags_seen.append(m.eflags)
        mm = Machine(path)
        mm.run(k)
        assert m.eflags == mm.eflags
    assert any(f & EFLAGS_IF for f in flags_seen) or label == "p_cli"
    assert not any(f & EFLAGS_TF for f in flags_seen)
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(ref) == []


# ---------------------------------------------------------------------------- rep strings
# Stepped with TF, a rep string instruction traps after every iteration, so the probe is
# hit once per iteration.  Unstepped, the CPU's instruction counter also sees one more
# pass per rep that ran out of count (the pass that finds rcx == 0 and leaves); the engine
# sends the guest back through the probe for that pass, so hits, the clock and the timer
# are exactly what an address hook and an unprobed run see.
REP_CASES = {
    # label: (iterations, reps with a zero count, reps that ran out of count)
    "p_rep_movsb": (43, 1, 3),
    "p_rep_stosq": (11, 1, 3),
    "p_repe_cmpsb": (53, 1, 3),  # a fourth compare ends on ZF: it leaves without a pass
}


def rep_calls(path, label):
    """(clock, rcx) at every pass an address hook sees at label, in an unprobed run."""
    m = Machine(path)
    calls = []
    m.add_code_hook(m.symbols[label].address, lambda mm: calls.append((mm.retired, mm.reg("rcx"))))
    assert m.run().reason is StopReason.HALTED
    return calls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label", sorted(REP_CASES))
def test_rep_string_probe_is_transparent(build_guest, label, mode):
    path = build_guest("fixup_rep")
    ref, counts = reference(path)
    iterations, empty, exhausted = REP_CASES[label]
    calls = rep_calls(path, label)
    assert sum(1 for _c, rcx in calls if rcx) == iterations
    assert len(calls) == counts[Machine(path).symbols[label].address] == iterations + empty + exhausted
    m = Machine(path)
    m.kprobes.set_mode(mode)
    kp = Kprobe(symbol_name=label)
    m.register_kprobe(kp)
    assert kp.mode == "single-step"  # never boosted: the slot's iterations are not counted
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == len(calls)
    assert snapshot(m).diff(ref) == []
    assert "r=0x1d\n" in m.console  # the compare that ends on ZF: 29 bytes left


@pytest.mark.parametrize("label", sorted(REP_CASES))
def test_rep_string_state_at_every_pass_equals_in_place(build_guest, label):
    """Stopped right after any pass of the rep (mid-way, last iteration, exit pass) and
    right after the next instruction, the probed machine equals the unprobed one."""
    path = build_guest("fixup_rep")
    calls = rep_calls(path, label)
    for k in sorted({c for c, _ in calls} | {c + 1 for c, _ in calls}):
        inplace = Machine(path)
        inplace.run(k)
        m = Machine(path)
        kp = Kprobe(symbol_name=label)
        m.register_kprobe(kp)
        assert m.run(k).reason is StopReason.BUDGET
        assert snapshot(m).diff(snapshot(inplace)) == [], k
        assert kp.hits == sum(1 for c, _ in calls if c <= k), k

"""The kernel's own kprobes smoke test (kernel/test_kprobes.c, 2008) through the Python
API, on the bundled minikernel: smoke_test() calls kprobe_target(rand1) and
kprobe_target2(rand1) once, early in init; the host sets rand1 (smoke_rand1) first.

Skipped when the bundled kernel is not built.
"""
from __future__ import annotations

import random

import pytest

from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine, StopReason

DIV_FACTOR = 3
#: Far enough for init to have run smoke_test() (it is done before ~45k instructions).
SMOKE_BUDGET = 60_000
_rng = random.Random(2008)
#: rand1: a random u32 > 3 (as the kernel's test draws it), plus the edges.
RAND1 = [4, 0xFFFFFFFF, _rng.randrange(4, 1 << 32), _rng.randrange(4, 1 << 32)]


def boot_with(rand1: int) -> Machine:
    m = Machine()
    m.write(m.symbols["smoke_rand1"].address, rand1.to_bytes(4, "little"))
    return m


def u32(m: Machine, name: str) -> int:
    return int.from_bytes(m.read(m.symbols[name].address, 4), "little")


def run_smoke(m: Machine, rand1: int) -> None:
    ev = m.run(SMOKE_BUDGET)
    assert ev.reason is StopReason.BUDGET, m.describe_stop(ev)
    want1, want2 = rand1 // DIV_FACTOR, rand1 // DIV_FACTOR + 1
    line = (
        f"smoke_test: kprobe_target(0x{rand1:08x}) = 0x{want1:08x}, "
        f"kprobe_target2(0x{rand1:08x}) = 0x{want2:08x}\n"
    )
    assert line in m.console
    assert (u32(m, "smoke_result1"), u32(m, "smoke_result2")) == (want1, want2)


@pytest.fixture(params=RAND1, ids=[f"rand1={r:#x}" for r in RAND1])
def rand1(request, kernel_path):
    return request.param


def test_unprobed_smoke_test_uses_rand1(rand1):
    m = boot_with(rand1)
    run_smoke(m, rand1)


def test_kprobe(rand1):
    """pre sets preh_val = rand1 / div_factor; post checks it and sets posth_val."""
    state = {"preh_val": 0, "posth_val": 0, "arg": None, "post_rip": None}
    m = boot_with(rand1)

    def pre(p, regs):
        state["arg"] = regs.rdi & 0xFFFFFFFF
        state["preh_val"] = rand1 // DIV_FACTOR
        return 0

    def post(p, regs, flags):
        assert state["preh_val"] == rand1 // DIV_FACTOR, "post_handler before pre_handler"
        state["posth_val"] = state["preh_val"] + DIV_FACTOR
        state["post_rip"] = regs.rip

    kp = Kprobe(symbol_name="kprobe_target", pre_handler=pre, post_handler=post)
    m.register_kprobe(kp)
    run_smoke(m, rand1)
    assert kp.hits == 1 and kp.nmissed == 0 and kp.faults == 0
    assert state["arg"] == rand1
    assert state["preh_val"] == rand1 // DIV_FACTOR and state["preh_val"] != 0
    assert state["posth_val"] == rand1 // DIV_FACTOR + DIV_FACTOR
    assert state["post_rip"] is not None
    m.unregister_kprobe(kp)
    assert m.kprobes.check_invariants() == []


def test_two_kprobes_registered_together(rand1):
    """register_kprobes(kps, 2): one on kprobe_target, one on kprobe_target2."""
    seen = {}
    m = boot_with(rand1)

    def make(name):
        def pre(p, regs):
            seen.setdefault(name, []).append(("pre", regs.rdi & 0xFFFFFFFF))
            return 0

        def post(p, regs, flags):
            seen.setdefault(name, []).append(("post", flags))

        return Kprobe(symbol_name=name, pre_handler=pre, post_handler=post)

    kps = [make("kprobe_target"), make("kprobe_target2")]
    for kp in kps:
        m.register_kprobe(kp)
    assert m.kprobes.all_probes() == kps
    run_smoke(m, rand1)
    for kp in kps:
        assert kp.hits == 1 and kp.nmissed == 0
        assert seen[kp.symbol_name] == [("pre", rand1), ("post", 0)]
    for kp in kps:
        m.unregister_kprobe(kp)
    assert m.kprobes.all_probes() == []
    assert m.kprobes.check_invariants() == []


def test_jprobe_with_the_guest_handler(rand1):
    """jkprobe_target (in the guest) stores its value in jprobe_seen_value and returns
    through jprobe_return(); the probed function then runs as usual."""
    m = boot_with(rand1)
    plain = boot_with(rand1)
    plain.run(SMOKE_BUDGET)
    jp = Jprobe("kprobe_target", "jkprobe_target")
    m.register_jprobe(jp)
    run_smoke(m, rand1)
    assert jp.hits == 1 and jp.nmissed == 0 and jp.faults == 0
    assert u32(m, "jprobe_seen_value") == rand1
    assert f"jprobe: kprobe_target(value=0x{rand1:x})\n" in m.console
    # The handler's work is the tool's: the guest's clock and its other output are unchanged.
    assert m.retired == plain.retired
    assert m.console.replace(f"jprobe: kprobe_target(value=0x{rand1:x})\n", "") == plain.console
    assert m.kprobes.current_kprobe is None
    assert m.kprobes.check_invariants() == []


def test_jprobe_with_a_python_handler(rand1):
    got = []
    m = boot_with(rand1)
    jp = Jprobe("kprobe_target", lambda value: got.append(value))
    m.register_jprobe(jp)
    run_smoke(m, rand1)
    assert got == [rand1]
    assert jp.hits == 1


def test_kretprobe(rand1):
    """The return handlers see rax == rand1 / div_factor (and + 1 for kprobe_target2)."""
    m = boot_with(rand1)
    seen = {}

    def make(name):
        def handler(ri, regs):
            seen.setdefault(name, []).append(
                (regs.rax & 0xFFFFFFFF, m.symbols.format(ri.ret_addr, with_size=False), ri.task)
            )

        return Kretprobe(name, handler)

    rps = [make("kprobe_target"), make("kprobe_target2")]
    for rp in rps:
        m.register_kretprobe(rp)
    run_smoke(m, rand1)
    init = next(t for t in m.tasks.all() if t.comm == "init")
    want = {"kprobe_target": rand1 // DIV_FACTOR, "kprobe_target2": rand1 // DIV_FACTOR + 1}
    for rp in rps:
        name = rp.symbol_name
        assert len(seen[name]) == 1
        rax, ret_site, task = seen[name][0]
        assert rax == want[name]
        assert ret_site.startswith("smoke_test+")
        assert task == init.address
        assert rp.hits == 1 and rp.nmissed == 0
        assert len(rp.free_instances) == rp.maxactive
    assert m.kprobes.kretprobes.instances_by_task() == []
    assert m.kprobes.check_invariants() == []


def test_all_smoke_probes_together_to_the_end(kernel_path):
    """kprobe + jprobe + kretprobe on kprobe_target at once, through the whole run:
    the kernel ends normally and only the jprobe's line is added to the console."""
    rand1 = RAND1[2]
    plain = boot_with(rand1)
    assert plain.run().reason is StopReason.HALTED
    m = boot_with(rand1)
    order = []
    kp = Kprobe(symbol_name="kprobe_target", pre_handler=lambda p, regs: order.append("k") or 0)
    jp = Jprobe("kprobe_target", lambda value: order.append(("j", value)))
    rp = Kretprobe(
        "kprobe_target",
        lambda ri, regs: order.append(("r", regs.rax & 0xFFFFFFFF)),
        entry_handler=lambda ri, regs: order.append("r-entry"),
    )
    m.register_kprobe(kp)
    m.register_jprobe(jp)
    m.register_kretprobe(rp)
    assert m.run().reason is StopReason.HALTED
    assert m.console == plain.console
    assert m.retired == plain.retired
    # Kprobes run newest first (the kretprobe's entry, then kp), the jprobe last; the
    # return handler at the return.
    assert order == ["r-entry", "k", ("j", rand1), ("r", rand1 // DIV_FACTOR)]
    assert m.console.endswith("minikernel: all tasks reaped, halting\n")
    assert m.kprobes.check_invariants() == []

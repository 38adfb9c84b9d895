"""The fast paths (kprobes/fastpath.py) against the reference paths they mirror.

Every workload of the engine tests (the test guests and the bundled kernel) runs twice
in kprobe-mode auto with the same probes: once with the fast paths (the jump-optimized
entry, the lone kretprobe's entry, the kretprobe booster's inline return) and once with
KprobeEngine.fast_paths = False, which sends every hit through the reference paths
(entries through kprobe_handler, nothing optimized; returns walked by
_run_return_handlers, trampoline_probe_handler's walk).  The two runs must agree on everything a
user can see: the trace lines the handlers write (with the clock), the kretprobe
instance table at every return, the counters (hits, nmissed, faults), the console and
the guest's final state.
"""
from __future__ import annotations

import pytest

from harness import snapshot
from kprobe_shell import Kprobe, Kretprobe, Machine, ProbeError

GUESTS = ["engine", "kret", "optimize", "workload", "faults",
          "fixup_call", "fixup_callind", "fixup_flags", "fixup_iret", "fixup_jmpind",
          "fixup_jumps", "fixup_rep", "fixup_ret", "fixup_riprel"]
#: Kernel functions called often by the bundled kernel's boot, self-tests and workload.
KERNEL_FUNCTIONS = ["do_fork", "copy_process", "do_sys_open", "sys_write", "schedule", "kprobe_target",
                    "sys_read", "do_exit", "wake_up_process"]
#: Which probes go on each function: kretprobes alone (the lone kretprobe's fast entry
#: and the booster), a kprobe on the second instruction beside them (plain optimized
#: entries), and a kprobe on the entry (an aggregate with the kretprobe's kprobe).
LAYOUTS = ["returns", "second-insn", "aggregate"]


def _return_address(m, addr: int):
    """The int3 trampoline and the booster's `ret` are the same return, planted two ways
    (a return probe's function returning into another's planted address)."""
    return "trampoline" if m.kprobes.kretprobes.is_trampoline(addr) else f"{addr:x}"


def _instance_table(m) -> list:
    return [(b, task, [(ri.rp.name if ri.rp else None, ri.index, _return_address(m, ri.ret_addr)) for ri in ris])
            for b, task, ris in m.kprobes.kretprobes.instances_by_task()]


def _probe_everything(m, functions, layout: str, lines: list) -> list:
    probes = []

    def pre(p, regs):
        lines.append(f"{m.time_ns} cpu{m.cpu_id} k {p.name} rip={regs.rip:x} rsp={regs.rsp:x} "
                     f"rdi={regs.rdi:x} rax={regs.rax:x}")
        return 0

    def ret(ri, regs):
        lines.append(f"{m.time_ns} cpu{m.cpu_id} r {ri.rp.name} rax={regs.rax:x} ret={_return_address(m, ri.ret_addr)} "
                     f"task={ri.task:x} #{ri.index} rsp={regs.rsp:x} table={_instance_table(m)}")

    for sym in functions:
        rp = Kretprobe(sym.name, ret, maxactive=3, name=f"r:{sym.name}")
        try:
            m.register_kretprobe(rp)
        except ProbeError:
            continue
        probes.append(rp)
        if layout == "returns":
            continue
        addr = sym.address
        if layout == "second-insn":
            bounds = m.kprobes.instruction_boundaries(sym.address)
            if len(bounds) < 2:
                continue
            addr = bounds[1]
        kp = Kprobe(addr=addr, pre_handler=pre, name=f"k:{sym.name}")
        try:
            m.register_kprobe(kp)
        except ProbeError:
            continue
        probes.append(kp)
    return probes


def _run(path, layout: str, fast: bool, functions=None):
    m = Machine(path) if path is not None else Machine()
    m.kprobes.fast_paths = fast
    funcs = [m.symbols[name] for name in functions if name in m.symbols] if functions else [
        s for s in m.image.symbols.functions() if s.size and s.name != "_start"]
    lines: list[str] = []
    probes = _probe_everything(m, funcs, layout, lines)
    optimized = sum(1 for p in probes if p.mode == "optimized")
    event = m.run(20_000_000)
    counters = [(p.name, p.hits, getattr(p, "kp", p).hits, p.nmissed, p.faults) for p in probes]
    return {
        "stop": (event.reason, event.rip),
        "lines": lines,
        "counters": counters,
        "instances": _instance_table(m),
        "snapshot": snapshot(m),
        "probes": len(probes),
    }, optimized


def _compare(fast, ref):
    assert fast["probes"] == ref["probes"]
    assert fast["stop"] == ref["stop"]
    for i, (a, b) in enumerate(zip(fast["lines"], ref["lines"])):
        assert a == b, f"trace line {i} differs:\n fast:      {a}\n reference: {b}"
    assert len(fast["lines"]) == len(ref["lines"])
    assert fast["counters"] == ref["counters"]
    assert fast["instances"] == ref["instances"]
    assert fast["snapshot"].console == ref["snapshot"].console
    assert fast["snapshot"] == ref["snapshot"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("guest", GUESTS)
def test_guest_workload_fast_and_reference_paths_agree(build_guest, guest, layout):
    path = build_guest(guest)
    fast, optimized = _run(path, layout, True)
    ref, optimized_ref = _run(path, layout, False)
    assert optimized_ref == 0  # the reference run really took the int3 paths
    assert optimized > 0  # and the fast one the jump
    _compare(fast, ref)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_kernel_workload_fast_and_reference_paths_agree(kernel_path, layout):
    fast, optimized = _run(None, layout, True, KERNEL_FUNCTIONS)
    ref, optimized_ref = _run(None, layout, False, KERNEL_FUNCTIONS)
    assert optimized_ref == 0 and optimized > 0
    assert fast["lines"], "no probe was hit"
    _compare(fast, ref)


def test_the_fast_paths_are_taken(build_guest):
    """The comparison above means something only if the fast run takes the fast paths."""
    m = Machine(build_guest("kret"))
    m.register_kretprobe(Kretprobe("leaf", lambda ri, regs: None))
    m.run()
    assert m.kprobes.get_kprobe(m.symbols["leaf"].address).mode == "optimized"
    assert m.kprobes.kretprobes.booster is not None

"""Property: probes are invisible to the guest.

Any sequence of register / unregister / enable / disable / run-N-instructions, with
kprobes on random instruction boundaries of random functions, return probes and jprobes
(Python entries) on random function entries, in any kprobe mode, leaves the guest's
console, clock, registers, memory and live stack exactly as the unprobed run leaves them,
and the engine's invariants true after every step.
"""
from __future__ import annotations

import pytest
from propsettings import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine, ProbeError, StopReason
from kprobe_shell.machine.layout import RESERVED_END

#: Functions that never return: a return probe there keeps its instance (and the
#: trampoline in the stack) to the end, as in the kernel.
NEVER_RETURN = {"_start"}


@pytest.fixture(scope="module")
def workload(build_guest):
    path = build_guest("workload")
    m = Machine(path)
    assert m.run().reason is StopReason.HALTED
    funcs = [f for f in m.symbols.functions()]
    bounds = sorted({a for f in funcs for a in m.kprobes.instruction_boundaries(f.address)})
    return path, final_state(m), bounds, funcs


def final_state(m) -> dict:
    """What the guest can tell about its run: console, clock, registers, the image's
    memory (as if no int3 were planted) and the live part of the stack."""
    rsp = m.reg("rsp")
    return {
        "console": m.console,
        "retired": m.retired,
        "registers": m.registers(),
        "memory": {page: m.kprobes.original_bytes(page, len(data)) for page, data in m.guest_memory().items()},
        "live stack": m.read(rsp, RESERVED_END - rsp),
    }


def ops(max_run: int):
    # Small indices half the time, so probes pile up on the same few addresses (aggregates).
    index = st.one_of(st.integers(0, 12), st.integers(0, 10**6))
    return st.lists(st.one_of(
        st.tuples(st.just("kprobe"), index, st.booleans()),
        st.tuples(st.just("kretprobe"), index, st.integers(0, 3)),
        st.tuples(st.just("jprobe"), index, st.none()),
        st.tuples(st.just("unregister"), index, st.none()),
        st.tuples(st.just("disable"), index, st.none()),
        st.tuples(st.just("enable"), index, st.none()),
        st.tuples(st.just("run"), st.integers(1, max_run), st.none()),
    ), max_size=24)


def apply_ops(m, ops_list, bounds, entries) -> None:
    """Do each operation; a refused registration must change nothing; the invariants
    hold after every step."""
    probes: list = []

    def record(*args):
        return 0

    for op, n, extra in ops_list:
        planted = m.kprobes.planted()
        try:
            if op == "kprobe":
                kp = Kprobe(addr=bounds[n % len(bounds)], pre_handler=record,
                            post_handler=(lambda p, regs, flags: None) if extra else None)
                probes.append(m.register_kprobe(kp))
            elif op == "kretprobe":
                f = entries[n % len(entries)]
                probes.append(m.register_kretprobe(Kretprobe(f.name, lambda ri, regs: 0, maxactive=extra)))
            elif op == "jprobe":
                f = entries[n % len(entries)]
                probes.append(m.register_jprobe(Jprobe(f.name, record)))
            elif op == "run":
                m.run(n)
            elif probes:
                p = probes[n % len(probes)]
                if op == "unregister":
                    m.unregister(p)
                    probes.remove(p)
                elif op == "disable":
                    m.disable_probe(p)
                else:
                    m.enable_probe(p)
        except ProbeError:
            assert m.kprobes.planted() == planted  # a refusal changes nothing
        assert m.kprobes.check_invariants() == [], (op, n)


@settings(max_examples=examples(120))
@given(mode=st.sampled_from(["auto", "single-step", "boost"]), ops_list=ops(2500))
def test_probe_sequences_are_invisible_to_the_guest(workload, mode, ops_list):
    path, reference, bounds, funcs = workload
    m = Machine(path)
    m.kprobes.set_mode(mode)
    apply_ops(m, ops_list, bounds, [f for f in funcs if f.name not in NEVER_RETURN])
    ev = m.run()
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    assert m.kprobes.check_invariants() == []
    state = final_state(m)
    for key in reference:
        assert state[key] == reference[key], key


@pytest.fixture(scope="module")
def kernel_run(kernel_path):
    m = Machine()
    assert m.run().reason is StopReason.HALTED
    funcs = m.symbols.functions()
    bounds = sorted({a for f in funcs for a in m.kprobes.instruction_boundaries(f.address)})
    return (m.console, m.retired), bounds, funcs


@settings(max_examples=examples(8))
@given(mode=st.sampled_from(["auto", "single-step", "boost"]), ops_list=ops(150_000))
def test_probe_sequences_on_the_kernel(kernel_run, mode, ops_list):
    """The same on the bundled kernel: tasks fork and exit, the timer interrupts probed
    code, return probes meet kprobe_flush_task.  Task stacks live in the image's memory
    (where a trampoline address may stay behind in a dead frame), so console and clock
    are compared, and the invariants (no instance of an exited task among them)."""
    (console, retired), bounds, funcs = kernel_run
    m = Machine()
    m.kprobes.set_mode(mode)
    apply_ops(m, ops_list, bounds, funcs)
    ev = m.run()
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    assert m.kprobes.check_invariants() == []
    assert (m.console, m.retired) == (console, retired)

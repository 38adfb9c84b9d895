"""The invariant checker itself: each invariant, broken on purpose, is reported.

(The autouse fixture in tests/conftest.py runs the checker after every engine and shell
test; these tests show it would notice.)
"""
from __future__ import annotations

import pytest

from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine, StopReason
from kprobe_shell.kprobes.kretprobes import KretprobeInstance

pytestmark = pytest.mark.no_invariants


@pytest.fixture
def m(engine_path):
    machine = Machine(engine_path)
    machine.kp = machine.register_kprobe(Kprobe(symbol_name="p_add"))
    machine.kp2 = machine.register_kprobe(Kprobe(symbol_name="p_after", post_handler=lambda *a: None))
    machine.rp = machine.register_kretprobe(Kretprobe("jtarget", lambda ri, regs: 0))
    machine.jp = machine.register_jprobe(Jprobe("step_fn", lambda *a: None))
    assert machine.run(300).reason is StopReason.BUDGET
    assert machine.kprobes.check_invariants() == []
    return machine


def test_all_hold_after_a_full_run(m):
    m.unregister_kprobe(m.kp)
    assert m.run().reason is StopReason.HALTED
    assert m.kprobes.check_invariants() == []


def test_stray_int3(m):
    addr = m.symbols["jtarget"].address + 1
    m.write(addr, b"\xcc")
    assert f"0xcc left at 0x{addr:x} where no probe is armed" in m.kprobes.check_invariants()


def test_probe_registered_but_not_armed(m):
    m.write(m.kp.addr, bytes([m.kp.opcode]))
    assert any("armed=False but enabled probes=1" in p for p in m.kprobes.check_invariants())


def test_leaked_slot(m):
    slot = m.kp2.slot
    del m.kprobes.slots.owner[slot]
    problems = m.kprobes.check_invariants()
    assert any(f"slots neither free nor owned (leaked): 0x{slot:x}" in p for p in problems)


def test_slot_free_and_owned(m):
    m.kprobes.slots._free.append(m.kp2.slot)
    assert any("slots both free and owned" in p for p in m.kprobes.check_invariants())


def test_free_slot_that_is_not_int3s(m):
    slot = m.kp2.slot
    m.unregister_kprobe(m.kp2)
    m.write(slot, b"\x90")
    assert f"free slot 0x{slot:x} does not hold int3s" in m.kprobes.check_invariants()


def test_instance_of_a_task_that_no_longer_exists(m):
    rp = m.rp
    ri = rp.free_instances.pop()
    ri.task = 0xDEAD000
    rp.used_instances.append(ri)
    m.kprobes.kretprobes.kretprobe_inst_table[0].append(ri)
    problems = m.kprobes.check_invariants()
    assert any("belongs to a task that no longer exists" in p for p in problems)


def test_lost_instance_breaks_free_plus_used(m):
    m.rp.free_instances.pop()
    assert any("free 9 + used 0 != maxactive 10" in p for p in m.kprobes.check_invariants())


def test_used_instance_in_no_bucket(m):
    rp = m.rp
    rp.used_instances.append(KretprobeInstance(rp, 99))
    rp.free_instances.pop()
    assert any("is in use but in no task's bucket" in p for p in m.kprobes.check_invariants())

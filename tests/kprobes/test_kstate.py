"""The kprobe state the C hit shares with Python (kprobes/_kstate.c, Kprobe.c_hits, the
stop word): one home each, read and written from Python as plain attributes."""
from __future__ import annotations

import ctypes
import io

import pytest

from kprobe_shell import Kprobe, Machine
from kprobe_shell.kprobes import _kstate
from kprobe_shell.kprobes.percpu import KprobeCtlblk
from kprobe_shell.machine import StopReason
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session


def test_hits_are_the_python_paths_count_and_the_c_hits_summed():
    p = Kprobe("hot")
    assert p.hits == 0
    p.python_hits += 2
    p.c_hits.value += 3
    assert p.hits == 5
    p.hits = 7  # a reset or a restore writes the sum
    assert p.hits == 7 and p.c_hits.value == 3


def test_the_ctlblk_current_kprobe_is_the_word_the_c_hit_reads():
    kcb = KprobeCtlblk()
    word = ctypes.c_void_p.from_address(_kstate.current_kprobe_address(kcb))
    assert kcb.current_kprobe is None and kcb.kprobe_status is None
    assert word.value == id(None)
    p = Kprobe("hot")
    kcb.current_kprobe = p
    assert word.value == id(p) and kcb.current_kprobe is p
    kcb.current_kprobe = None
    assert word.value == id(None)


def test_a_pending_stop_is_the_cpus_stop_word(kernel_path):
    m = Machine(kernel_path)
    seen = []

    def stop(machine):
        machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, "here"))
        seen.append(machine.cpu.icount.stop_asked)

    m.add_code_hook(m.image.symbols["do_fork"].address, stop)
    event = m.run()
    assert event.reason is StopReason.BREAKPOINT and seen == [1]
    assert m.pending_stop is None and m.cpu.icount.stop_asked == 0


def test_c_recorded_hits_show_in_the_probes_count(kernel_path):
    out = io.StringIO()
    s = Session(kernel_path, output=Output(stream=out, color=False))
    s.execute("p:open do_sys_open path=+0(%si):string")
    s.execute("run")
    kp = s.probes[1].obj
    assert s.machine.kprobes.optimizer.c_hits.recorded  # recorded in C
    assert kp.c_hits.value > 0 and kp.python_hits == 0
    assert kp.hits == out.getvalue().count("open: (")


def test_the_instance_lists_are_views_of_the_c_table(kernel_path):
    from kprobe_shell import Kretprobe
    from kprobe_shell.kprobes.types import hash_ptr

    m = Machine(kernel_path)
    rp = m.register_kretprobe(Kretprobe("do_sys_open", maxactive=3))
    mgr = m.kprobes.kretprobes
    free = rp.free_instances
    assert [ri.index for ri in free] == [0, 1, 2] and rp.used_instances == []
    ri = free.pop(0)  # as the entry takes one
    ri.task, ri.ret_addr, ri.stack_slot = 0x1234000, 0x101010, 0x7000
    mgr._table.add_rp_inst(ri._id)
    bucket = mgr.kretprobe_inst_table[hash_ptr(0x1234000)]
    assert list(bucket) == [ri] and rp.used_instances == [ri] and ri.bucket is bucket
    assert (ri.task, ri.ret_addr, ri.stack_slot, ri.rp) == (0x1234000, 0x101010, 0x7000, rp)
    assert [p for p in m.kprobes.check_invariants() if "no longer exists" not in p] == []  # a made-up task
    mgr.recycle_rp_inst(ri)
    assert ri.bucket is None and not bucket and [x.index for x in rp.free_instances] == [1, 2, 0]
    rp.free_instances.insert(0, rp.free_instances.pop())
    assert [x.index for x in rp.free_instances] == [0, 1, 2]
    with pytest.raises(ValueError):
        rp.used_instances.remove(ri)
    m.unregister_kretprobe(rp)
    assert rp.free_instances == [] and rp.used_instances == []

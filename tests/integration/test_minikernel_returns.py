"""Jprobes and kretprobes on the bundled kernel's workload, checked against independent counts."""
from __future__ import annotations

import os
from collections import defaultdict

import pytest

from kprobe_shell import Jprobe, Kretprobe, Machine, ProbeError, StopReason
from kprobe_shell.images import bundled_image_path

pytestmark = pytest.mark.skipif(not os.path.exists(bundled_image_path()), reason="bundled kernel not built")

#: Code that is not a C function of the kernel's own (entry stubs, asm fix-up cases, the
#: jprobe handlers, which the guest never calls) gets no return probe in the sweep.
NOT_FUNCTIONS = {"_start", "timer_interrupt", "switch_to", "ret_from_fork", "child_rip", "ret_from_execve",
                 "ret_from_program", "kretprobe_trampoline_holder", "jprobe_return"}


@pytest.fixture(scope="module")
def baseline():
    m = Machine()
    ev = m.run()
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    return m.console, m.retired


def _functions(m):
    return [s for s in m.symbols.functions() if s.name not in NOT_FUNCTIONS and not s.name.startswith("fx_")]


def test_kretprobes_and_python_jprobes_everywhere_are_transparent(baseline):
    console, retired = baseline
    m = Machine()
    registered = refused = 0
    for sym in _functions(m):
        try:
            m.register_kretprobe(Kretprobe(sym.name, handler=lambda ri, regs: None, maxactive=64))
            registered += 1
        except ProbeError:
            refused += 1  # the exec path, by design
        try:
            m.register_jprobe(Jprobe(sym.name, lambda *args: None))
        except ProbeError:
            pass
    assert registered > 150
    ev = m.run()
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    assert m.console == console
    assert m.retired == retired
    assert m.kprobes.check_invariants() == []


def _entries_and_returns(func: str, return_site: str):
    """Independent count on an unprobed machine: per task, calls of func and returns to its
    caller's return site (exact-address hooks, no probes)."""
    m = Machine()
    entry = m.symbols[func].address
    events = []
    m.add_code_hook(entry, lambda mm: events.append(("call", mm.tasks.current_address())))
    site = m.symbols.lookup(return_site.split("+")[0]).address + int(return_site.split("+")[1], 16)
    m.add_code_hook(site, lambda mm: events.append(("ret", mm.tasks.current_address())))
    ev = m.run()
    assert ev.reason is StopReason.HALTED
    return events


def _return_site_of(func: str, caller: str) -> str:
    m = Machine()
    from kprobe_shell.kprobes.x86 import _cs

    sym = m.symbols[caller]
    code = m.image.symbol_bytes(sym)
    target = m.symbols[func].address
    for insn in _cs.disasm(code, sym.address):
        if insn.mnemonic == "call" and insn.op_str == hex(target):
            return f"{caller}+{insn.address + insn.size - sym.address:#x}"
    raise AssertionError(f"{caller} does not call {func}")


def test_do_sys_open_returns_once_per_call_per_task():
    site = _return_site_of("do_sys_open", "sys_open")
    events = _entries_and_returns("do_sys_open", site)
    calls = sum(1 for k, _ in events if k == "call")
    m = Machine()
    seen = defaultdict(int)
    rp = Kretprobe("do_sys_open", handler=lambda ri, regs: seen.__setitem__(ri.task, seen[ri.task] + 1), maxactive=64)
    m.register_kretprobe(rp)
    assert m.run().reason is StopReason.HALTED
    expected = defaultdict(int)
    for kind, task in events:
        if kind == "ret":
            expected[task] += 1
    assert calls == sum(expected.values())  # every call of do_sys_open returns in this workload
    assert dict(seen) == dict(expected)
    assert rp.nmissed == 0


def test_maxactive_1_misses_exactly_the_overlapping_calls():
    """Simulate maxactive=1 on the independent call/return stream; the engine must agree."""
    site = _return_site_of("do_sys_open", "sys_open")
    events = _entries_and_returns("do_sys_open", site)
    free, missed = 1, 0
    stacks = defaultdict(list)  # per task: was each call in flight traced?
    for kind, task in events:
        if kind == "call":
            traced = free > 0
            free -= traced
            missed += not traced
            stacks[task].append(traced)
        else:
            free += stacks[task].pop()
    assert missed > 0, "the workload should have several tasks inside do_sys_open at once"
    m = Machine()
    rp = Kretprobe("do_sys_open", handler=lambda ri, regs: None, maxactive=1)
    m.register_kretprobe(rp)
    assert m.run().reason is StopReason.HALTED
    assert rp.nmissed == missed
    assert m.kprobes.check_invariants() == []


def test_two_kretprobes_on_one_function_and_recursion_order():
    m = Machine()
    order = []
    depth_of = {}

    def entry(ri, regs):
        ri.data["depth"] = regs.rsi
        depth_of[id(ri)] = regs.rsi

    a = Kretprobe("path_lookup_recursive", handler=lambda ri, regs: order.append(("a", ri.data["depth"])),
                  entry_handler=entry, maxactive=32)
    b = Kretprobe("path_lookup_recursive", handler=lambda ri, regs: order.append(("b", ri.data["depth"])),
                  entry_handler=entry, maxactive=32)
    m.register_kretprobe(a)
    m.register_kretprobe(b)
    assert m.run().reason is StopReason.HALTED
    assert order, "path_lookup_recursive never returned"
    # Both probes see every return, and the deepest call returns first (LIFO).
    assert [d for k, d in order if k == "a"] == [d for k, d in order if k == "b"]
    depths = [d for k, d in order if k == "a"]
    first_chain = depths[: depths.index(min(depths)) + 1] if depths else []
    assert first_chain, depths
    assert a.nmissed == b.nmissed == 0


def test_task_exiting_inside_vfs_read_has_its_instance_flushed():
    m = Machine()
    rp = Kretprobe("vfs_read", handler=lambda ri, regs: None, maxactive=32)
    m.register_kretprobe(rp)
    mgr = m.kprobes.kretprobes
    snapshots = []
    # exit_thread runs just before the flush (the engine's own hook on kprobe_flush_task
    # was installed first, so a hook there would see the table already flushed).
    flush = m.symbols["exit_thread"].address

    def at_flush(mm):
        task = mm.tasks.current_address()
        comm = mm.tasks.read_task(task).comm
        before = [ri for _b, t, ris in mgr.instances_by_task() if t == task for ri in ris]
        snapshots.append((comm, task, len(before)))

    m.add_code_hook(flush, at_flush)
    assert m.run().reason is StopReason.HALTED
    quitter = [s for s in snapshots if s[0] == "quitter"]
    assert quitter and quitter[0][2] >= 1, snapshots  # it died inside vfs_read: an instance in flight
    task = quitter[0][1]
    assert not any(ri.task == task for _b, _t, ris in mgr.instances_by_task() for ri in ris)
    assert len(rp.free_instances) == rp.maxactive
    assert m.kprobes.check_invariants() == []


def test_exec_path_return_probe_is_refused_and_unsafe_shows_the_bug():
    m = Machine()
    with pytest.raises(ProbeError, match="exec path"):
        m.register_kretprobe(Kretprobe("do_execve", handler=lambda ri, regs: None))
    m.register_kretprobe(Kretprobe("do_execve", handler=lambda ri, regs: None, unsafe=True))
    ev = m.run()
    assert ev.reason is StopReason.BUG
    assert "no return-probe instance" in ev.message
    # The guest is stopped, not gone: its state can still be read.
    assert m.registers()["rip"] == ev.rip
    assert m.run().reason is StopReason.BUG


def test_guest_jprobe_handler_runs_in_the_guest_and_mirrors_arguments():
    m = Machine()
    jp = Jprobe("ip_queue_xmit", "jip_queue_xmit")
    m.register_jprobe(jp)
    ev = m.run()
    assert ev.reason is StopReason.HALTED, m.describe_stop(ev)
    assert jp.hits > 0
    assert "jip_queue_xmit" in m.console or "ipfragok" in m.console
    assert m.kprobes.check_invariants() == []

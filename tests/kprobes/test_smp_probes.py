"""Probes on the SMP machine.

- Out-of-line stepping (the kernel's way) changes nothing a guest on 2 or 4 CPUs can see:
  kprobes on every function entry and kretprobes on busy functions give the unprobed
  run's console, per-CPU clocks and data memory byte for byte, and every probe's hits
  equal the calls counted independently (the machine's own code hooks, unprobed run).
- In-place stepping (restore the byte, step, re-plant) lets the other CPUs run through the
  probe unseen: those runs are counted as missed_in_place, and hits + missed_in_place
  equal the calls counted independently on the same run.
- The 2005 serialisation: no two CPUs are ever inside the kprobe path at once; a CPU that
  traps meanwhile waits for the lock.
- Per-CPU state: return-probe instances of tasks on different CPUs coexist in the table;
  jprobes save their registers per CPU.
"""
from __future__ import annotations

import pytest

from harness import count_executions, data_pages
from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine, ProbeError, StopReason

#: Busy functions, several of which tasks sleep inside (so instances pile up per task).
RETURN_PROBED = ("do_sys_open", "sys_open", "vfs_read", "sys_read", "cat_file", "printk", "vsnprintf",
                 "real_lookup", "io_schedule", "schedule_timeout", "ip_queue_xmit", "do_fork",
                 "_spin_lock_irqsave", "memcpy", "try_to_wake_up", "scheduler_tick")


def per_cpu_clocks(m: Machine) -> list[int]:
    return [c.icount.retired for c in m.cpus]


def data_outside_stacks(m: Machine) -> dict:
    """Data pages except the kernel stacks: a return probe leaves the trampoline's address
    in stack memory below the stack pointer (dead stack), which the guest never reads."""
    stacks = [m.symbols[name] for name in ("stack_pool", "init_thread_union", "idle_stacks")]
    return {page: data for page, data in data_pages(m).items()
            if not any(s.address < page + len(data) and page < s.address + s.size for s in stacks)}


@pytest.fixture(scope="module", params=[2, 4])
def reference(request):
    """The unprobed run, with every function entry's calls counted by plain code hooks."""
    m = Machine(cpus=request.param)
    entries = [f.address for f in m.symbols.functions()]
    counts = count_executions(m, entries, ranged=True)
    assert m.run().reason is StopReason.HALTED
    return request.param, m, counts


def test_probes_everywhere_change_nothing(reference):
    ncpus, ref, counts = reference
    m = Machine(cpus=ncpus)
    kprobes = {}
    for f in m.symbols.functions():
        try:
            kprobes[f.address] = m.register_kprobe(Kprobe(addr=f.address, pre_handler=lambda p, regs: 0))
        except ProbeError:
            pass  # the engine's own (trampoline, jprobe_return) and the exec path
    returns = []
    seen_cpus = set()
    for name in RETURN_PROBED:
        def on_return(ri, regs):
            seen_cpus.add(m.cpu_id)
            return 0
        returns.append(m.register_kretprobe(Kretprobe(name, handler=on_return, maxactive=20)))
    assert len(kprobes) > 150
    assert m.run().reason is StopReason.HALTED
    assert m.console == ref.console
    assert per_cpu_clocks(m) == per_cpu_clocks(ref)
    assert data_outside_stacks(m) == data_outside_stacks(ref)
    wrong = {hex(a): (p.hits, counts[a]) for a, p in kprobes.items() if p.hits != counts[a]}
    assert wrong == {}
    assert all(p.nmissed == 0 and p.missed_in_place == 0 for p in kprobes.values())
    assert all(rp.nmissed == 0 for rp in returns)
    assert sum(rp.hits for rp in returns) > 500
    assert seen_cpus == set(range(ncpus))  # return handlers ran on every CPU
    assert m.kprobes.lock_spins == 0  # Python handlers: no CPU ever held the lock across a quantum
    assert m.kprobes.check_invariants() == []


def calls_and_probe(ncpus: int, symbol: str, step: str):
    """A kprobe on symbol, stepped `step`; the calls counted on the same run by a code hook
    on the function's second instruction, which every call runs exactly once however its
    first was stepped (in its slot, or in place)."""
    m = Machine(cpus=ncpus)
    m.kprobes.set_step_mode(step)
    kp = m.register_kprobe(Kprobe(symbol, pre_handler=lambda p, regs: 0))
    second = m.kprobes.instruction_boundaries(kp.addr)[1]
    calls = count_executions(m, [second])
    assert m.run().reason is StopReason.HALTED
    assert "minikernel: all tasks reaped, halting" in m.console
    return m, kp, calls[second]


@pytest.mark.parametrize("ncpus", [2, 4])
def test_in_place_misses_hits_out_of_line_does_not(ncpus):
    m_ool, kp_ool, calls_ool = calls_and_probe(ncpus, "_spin_lock_irqsave", "out-of-line")
    assert kp_ool.hits == calls_ool and kp_ool.missed_in_place == 0
    m_inp, kp_inp, calls_inp = calls_and_probe(ncpus, "_spin_lock_irqsave", "in-place")
    assert kp_inp.missed_in_place > 0
    assert kp_inp.hits + kp_inp.missed_in_place == calls_inp
    assert m_inp.kprobes.check_invariants() == []


def test_in_place_on_one_cpu_misses_nothing_and_changes_nothing():
    ref = Machine()
    ref.run()
    m, kp, calls = calls_and_probe(1, "_spin_lock_irqsave", "in-place")
    assert kp.missed_in_place == 0 and kp.hits == calls
    assert m.console == ref.console and m.retired == ref.retired


def test_handlers_never_run_on_two_cpus_at_once():
    """In-place windows span quanta, so other CPUs trap while the lock is held: they wait
    (lock_spins), and no handler ever starts while another CPU is inside the kprobe path."""
    m = Machine(cpus=2)
    m.kprobes.set_step_mode("in-place")
    overlaps = []

    def pre(p, regs):
        me = m.cpu_id
        busy = [i for i, k in enumerate(m.kprobes.ctlblks) if i != me and k.current_kprobe is not None]
        if busy:
            overlaps.append((me, busy))
        return 0

    probes = [m.register_kprobe(Kprobe(name, pre_handler=pre))
              for name in ("_spin_lock_irqsave", "vsnprintf")]
    assert m.run().reason is StopReason.HALTED
    assert overlaps == []
    assert m.kprobes.lock_spins > 0
    assert sum(p.hits for p in probes) > 0


def test_return_instances_of_tasks_on_different_cpus_coexist():
    m = Machine(cpus=2)
    rp = m.register_kretprobe(Kretprobe("do_sys_open", handler=lambda ri, regs: 0, maxactive=20))
    calls = count_executions(m, [m.kprobes.instruction_boundaries(rp.kp.addr)[1]])
    best: dict = {}
    while m.run(max_insns=2_000).reason is StopReason.BUDGET:
        rows = m.kprobes.kretprobes.instances_by_task()
        cpus = {m.tasks.read_task(task).cpu for _bucket, task, _ris in rows}
        if len(cpus) > len(best.get("cpus", ())):
            best = {"cpus": cpus, "tasks": len(rows)}
    assert best["cpus"] == {0, 1} and best["tasks"] >= 3
    # every call returned through its instance (quitter's last open too: it is vfs_read
    # that never returns for it)
    assert rp.nmissed == 0 and rp.hits == sum(calls.values()) > 10


def test_guest_jprobe_handlers_are_serialised_by_the_kprobe_lock():
    """A guest-resident jprobe handler runs guest code with kprobe_lock held (2.6.12 kept
    it until the step after jprobe_return), so a quantum can end inside it; the other CPU
    then hits the busy probe on _spin_lock_irqsave and waits for the lock.  The handler's
    own printk hits that probe too, on its own CPU: a re-entrant hit (nmissed)."""
    ref = Machine(cpus=2)
    ref.run()
    m = Machine(cpus=2)
    jp = m.register_jprobe(Jprobe("do_sys_open", "jdo_sys_open"))
    kp = m.register_kprobe(Kprobe("_spin_lock_irqsave", pre_handler=lambda p, regs: 0))
    second = {jp: m.kprobes.instruction_boundaries(jp.addr)[1], kp: m.kprobes.instruction_boundaries(kp.addr)[1]}
    calls = count_executions(m, list(second.values()))
    assert m.run().reason is StopReason.HALTED
    assert m.kprobes.lock_spins > 0  # a CPU did find the lock held by the other one
    assert jp.hits == calls[second[jp]] > 10 and jp.nmissed == 0
    assert m.console.count("jprobe: do_sys_open(dfd=") == jp.hits
    assert kp.nmissed > 0 and kp.hits + kp.nmissed == calls[second[kp]]
    for tag in ("[opener1]", "[opener2]", "[netd]", "[hello]", "[quitter]"):
        assert [line for line in m.console.splitlines() if line.startswith(tag)] == \
            [line for line in ref.console.splitlines() if line.startswith(tag)]
    assert all(k.current_kprobe is None and k.jprobe_active is None for k in m.kprobes.ctlblks)
    assert m.kprobes.check_invariants() == []


# ---------------------------------------------------------------------------- probe modes on SMP
@pytest.mark.parametrize("mode", ["auto", "optimize"])
def test_nothing_is_optimized_on_smp_probes_fall_back_to_boost(mode):
    """No stop_machine model: on 2+ CPUs the optimizer refuses every probe, with the reason,
    and the probes work as boosted int3 probes."""
    m = Machine(cpus=2)
    m.kprobes.set_mode(mode)
    kp = m.register_kprobe(Kprobe("do_fork", pre_handler=lambda p, regs: 0))
    assert kp.mode == "boost" and m.kprobes.optimizer.active == {}
    assert m.kprobes.get_kprobe(kp.addr).optimize_refusal == "SMP (no stop_machine model)"
    calls = count_executions(m, [m.kprobes.instruction_boundaries(kp.addr)[1]])
    assert m.run().reason is StopReason.HALTED
    assert m.kprobes.optimizer.active == {} and kp.hits == sum(calls.values()) > 0
    assert m.kprobes.check_invariants() == []


def test_the_shell_says_why_nothing_is_optimized_on_smp(kernel_path):
    import io

    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session

    buf = io.StringIO()
    session = Session(output=Output(stream=buf, color=False))
    session.execute("set cpus 2")
    session.execute("reset")
    session.execute("kprobe do_fork")
    session.execute("set kprobe-mode optimize")
    session.execute("probes")
    text = buf.getvalue()
    assert "probe 1 at do_fork+0x0/" in text and "not optimized: SMP (no stop_machine model)" in text
    row = next(line for line in text.splitlines() if line.startswith("1 "))
    assert " boost " in row and "(not optimized: SMP (no stop_machine model))" in row


def test_the_kretprobe_booster_keeps_the_kprobe_lock_on_smp():
    """Returns through the booster (auto mode) while another CPU holds the 2005 kprobe lock
    (a guest jprobe handler runs with it held, across quanta) go through the int3
    trampoline, whose trap waits for the lock: every return is handled once, and no return
    handler runs while another CPU is inside the kprobe path."""
    m = Machine(cpus=2)
    overlaps = []

    def on_return(ri, regs):
        me = m.cpu_id
        if any(i != me and k.current_kprobe is not None for i, k in enumerate(m.kprobes.ctlblks)):
            overlaps.append(me)
        return 0

    jp = m.register_jprobe(Jprobe("do_sys_open", "jdo_sys_open"))
    rps = [m.register_kretprobe(Kretprobe(name, handler=on_return, maxactive=20))
           for name in ("sys_open", "real_lookup", "do_fork")]
    calls = count_executions(m, [m.kprobes.instruction_boundaries(rp.kp.addr)[1] for rp in rps])
    tramp = m.kprobes.kretprobes.trampoline_probe
    assert m.run().reason is StopReason.HALTED
    assert overlaps == []
    assert jp.hits > 10 and m.kprobes.lock_spins > 0
    for rp in rps:  # a call from inside the jprobe's handler (its printk) is a re-entrant hit
        assert rp.hits + rp.nmissed == calls[m.kprobes.instruction_boundaries(rp.kp.addr)[1]] > 0
    assert tramp.hits > 0  # returns that found the lock taken waited at the int3 trampoline
    assert all(k.current_kprobe is None for k in m.kprobes.ctlblks)
    assert m.kprobes.check_invariants() == []

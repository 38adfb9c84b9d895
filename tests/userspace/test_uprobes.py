"""uprobes and uretprobes on real programs: transparent, counted exactly, per task."""
from __future__ import annotations

import collections

import pytest
from unicorn import UC_HOOK_CODE

from kprobe_shell import Machine, ProbeError, Program, StopReason, Uprobe, Uretprobe
from kprobe_shell.uprobes.program import ProbedProgram

BUDGET = 200_000_000
#: BZ2_ functions of libbz2 left out of the every-instruction run for time only (together
#: 2.6 million of the 2.75 million hits of all of them; a run with them passes too, in
#: about four minutes).
HOT_BZ2 = {"BZ2_bzDecompress", "BZ2_compressBlock", "BZ2_decompress"}
#: Functions whose return address is not a return address to hijack: _start's [rsp] is
#: argc; setjmp saves its own return address (the trampoline, once hijacked) for
#: longjmp, which on Linux too then returns through the trampoline.
NOT_RETURNING_NORMALLY = {"_start", "_setjmp", "__setjmp", "__sigsetjmp", "setjmp", "sigsetjmp"}


def run(m: Machine) -> Machine:
    assert m.run(max_insns=BUDGET).reason is StopReason.HALTED
    return m


def execution_counts(prog: Program, ranges: list[tuple[int, int]]) -> collections.Counter:
    """How many times each instruction in ranges runs, unprobed (a unicorn code hook)."""
    m = Machine(programs=[prog])
    counts: collections.Counter = collections.Counter()
    for lo, hi in sorted(set(ranges)):  # aliases share an address: count it once
        m.uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, d: counts.update((a,)), None, lo, hi - 1)
    run(m)
    return counts


@pytest.fixture(scope="module")
def bzip(build_program):
    return build_program("bzip", "glibc", extra=("-lbz2",))


@pytest.fixture(scope="module")
def uprobed(build_program):
    return build_program("uprobed", "glibc", extra=("-g",))


@pytest.mark.slow
def test_a_uprobe_on_every_instruction_of_libbz2_changes_nothing_and_counts_exactly(bzip):
    prog = ProbedProgram(bzip)
    funcs = [f for f in prog.symbols.functions() if f.name.startswith("BZ2_") and f.name not in HOT_BZ2]
    reference = run(Machine(programs=[Program(bzip, ["bzip"])]))
    counts = execution_counts(Program(bzip, ["bzip"]), [(f.address, f.address + f.size) for f in funcs])
    m = Machine(programs=[Program(bzip, ["bzip"])])
    ups = [m.register_uprobe(Uprobe(bzip, symbol_name=f.name, symbol_offset=a - f.address))
           for f in funcs for a in prog.instruction_boundaries(f.address, f.size)]
    run(m)
    assert len(ups) > 2000
    assert m.console == reference.console and "identical" in m.console
    assert m.retired == reference.retired
    wrong = [(hex(u.vaddr), u.hits, counts[u.vaddr]) for u in ups if u.hits != counts[u.vaddr]]
    assert not wrong
    assert sum(u.hits for u in ups) > 100_000


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_a_uretprobe_on_every_function_with_recursion_and_longjmp(build_program, libc):
    uprobed = build_program("uprobed", libc, extra=("-g",))
    prog = ProbedProgram(uprobed)
    funcs = [f for f in prog.symbols.functions() if f.name not in NOT_RETURNING_NORMALLY]
    argv = ["uprobed", "12"]
    reference = run(Machine(programs=[Program(uprobed, argv)]))
    entries = execution_counts(Program(uprobed, argv), [(f.address, f.address + 1) for f in funcs])
    m = Machine(programs=[Program(uprobed, argv)])
    returns: collections.Counter = collections.Counter()
    fib_values = []

    def on_return(ri, regs, name):
        returns[name] += 1
        if name == "fib":
            fib_values.append(regs.rax)

    rps, refused = [], []
    for f in funcs:
        try:
            rps.append(m.register_uretprobe(Uretprobe(uprobed, symbol_name=f.name,
                                                      handler=lambda ri, regs, n=f.name: on_return(ri, regs, n))))
        except ProbeError as exc:  # a function that starts with hlt or syscall (musl's)
            refused.append(str(exc))
    assert len(refused) <= 3 and all("cannot be probed: " in r for r in refused), refused
    assert len(rps) > 100
    run(m)
    assert m.console == reference.console and m.retired == reference.retired
    assert [(rp.symbol_name, rp.hits, entries[rp.vaddr]) for rp in rps if rp.hits != entries[rp.vaddr]] == []
    assert sum(rp.nmissed for rp in rps) == 0
    assert returns["fib"] == entries[prog.vaddr_of_symbol("fib")] and fib_values[-1] == 144
    # longjmp left deep(5)..deep(0) without returning: no handler, instances dropped
    assert returns["deep"] == 0 and returns["jumper"] == 1
    assert not any(u.return_instances for u in m.uprobes.utasks.values())


def test_two_processes_of_one_program_hits_and_instances_per_task(uprobed):
    progs = [Program(uprobed, ["uprobed", "15", "first"]), Program(uprobed, ["uprobed", "14", "second"])]
    reference = run(Machine(programs=progs, timer_period=500))
    m = Machine(programs=progs, timer_period=500)
    calls = collections.defaultdict(list)
    rets = collections.defaultdict(list)
    both_pending = []
    up = m.register_uprobe(Uprobe(uprobed, symbol_name="fib", handler=lambda p, regs: calls[regs.task.pid].append(regs.rdi)))

    def on_entry(ri, regs):
        pending = {u.pid for u in m.uprobes.utasks.values() if u.return_instances}
        both_pending.append(len(pending) == 2)

    rp = m.register_uretprobe(Uretprobe(uprobed, symbol_name="fib", entry_handler=on_entry,
                                        handler=lambda ri, regs: rets[ri.pid].append((regs.task.pid, regs.rax))))
    run(m)
    assert m.console == reference.console and m.retired == reference.retired
    fib = ProbedProgram(uprobed).vaddr_of_symbol("fib")
    fib_calls = {n: execution_counts(prog, [(fib, fib + 1)])[fib] for n, prog in ((15, progs[0]), (14, progs[1]))}
    assert {pid: len(c) for pid, c in calls.items()} == {2: fib_calls[15], 3: fib_calls[14]}
    assert calls[2][0] == 15 and calls[3][0] == 14
    assert up.hits == rp.hits == fib_calls[15] + fib_calls[14]
    assert all(pid == owner for owner, values in rets.items() for pid, _v in values)
    assert rets[2][-1] == (2, 610) and rets[3][-1] == (3, 377)
    assert any(both_pending)  # the two ran interleaved, each with its own instances


def test_fork_inside_a_probed_function_the_child_returns_through_its_copy(uprobed):
    argv = ["uprobed", "5", "x", "fork"]
    reference = run(Machine(programs=[Program(uprobed, argv)]))
    m = Machine(programs=[Program(uprobed, argv)])
    mains = []
    m.register_uretprobe(Uretprobe(uprobed, symbol_name="main", handler=lambda ri, regs: mains.append((ri.pid, regs.rax))))
    run(m)
    assert m.console == reference.console and m.retired == reference.retired
    assert "child exited with 3" in m.console
    assert sorted(mains) == [(2, 0), (3, 3)]


def test_a_probe_registered_while_the_program_runs_reaches_it(uprobed):
    m = Machine(programs=[Program(uprobed, ["uprobed", "12"])])
    reference = run(Machine(programs=[Program(uprobed, ["uprobed", "12"])]))
    m.run(max_insns=reference.retired // 2)
    assert m.tasks.current() is not None
    up = m.register_uprobe(Uprobe(uprobed, symbol_name="greet"))
    run(m)
    assert up.hits == 1 and m.console == reference.console and m.retired == reference.retired
    m.unregister_uprobe(up)


@pytest.mark.parametrize("where, message", [
    (dict(symbol_name="fib", symbol_offset=1), "is not an instruction boundary (nearest: fib+0x0, fib+0x"),
    (dict(offset=0), "is outside the program's text"),
    (dict(symbol_name="no_such_function"), "no function 'no_such_function' in uprobed"),
])
def test_a_bad_place_is_refused_with_the_reason(uprobed, where, message):
    m = Machine(programs=[Program(uprobed, ["uprobed"])])
    with pytest.raises(ProbeError, match=message.replace("(", r"\(").replace("+", r"\+")):
        m.register_uprobe(Uprobe(uprobed, **where))
    assert not m.uprobes.uprobes


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_uretprobes_on_two_cpus_change_nothing(build_program, libc):
    """Two processes of one program on two CPUs (a child runs on the other CPU): a
    uretprobe on every function changes neither the output nor the instruction count."""
    uprobed = build_program("uprobed", libc, extra=("-g",))
    prog = ProbedProgram(uprobed)
    programs = [Program(uprobed, ["uprobed", "12"]), Program(uprobed, ["uprobed", "9"])]
    reference = run(Machine(cpus=2, programs=programs))
    m = Machine(cpus=2, programs=programs)
    rps = []
    for f in prog.symbols.functions():
        if f.name in NOT_RETURNING_NORMALLY:
            continue
        try:
            rps.append(m.register_uretprobe(Uretprobe(uprobed, symbol_name=f.name, handler=lambda ri, regs: None)))
        except ProbeError:
            pass
    run(m)
    assert m.console == reference.console and m.retired == reference.retired
    assert "fib(12) = 144" in m.console and "fib(9) = 34" in m.console
    assert sum(rp.hits for rp in rps) > 400 and sum(rp.nmissed for rp in rps) == 0

"""Return probes recorded in C (a kretprobe's entry at a jump-optimized address, alone or
beside p: events, and its return at the booster: tracing/_hit.c over the kretprobe
instance table of kprobes/_kstate.c) against the Python paths (`set trace-hits python`):
the same trace text, trace.dat bytes, instance tables, hits and nmissed, through
recursion, maxactive exhaustion and tasks that exit with instances outstanding."""
from __future__ import annotations

import io

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session

WORKLOAD = [
    "p:recin path_lookup_recursive d=%si",           # an aggregate: a p: event and r:rec's entry
    "r3:rec path_lookup_recursive ret=$retval",      # recursion deeper than maxactive: nmissed
    "r:sched schedule",                              # tasks sleep in schedule, and die there
    "r:open do_sys_open ret=$retval:s32 c=$comm name=+0(%si):string",
    "r1:fork do_fork ret=$retval if ret > 0",
    "r:vread vfs_read ret=$retval",                  # an int3 entry in auto mode: its returns at the booster
    # map lines on return events, fed by $retval and the other fields
    "@opens[c] = count() on open",
    "@depth = hist(ret) on rec",
    "@read[comm] = sum(ret) on vread",
    "@forks = lhist(ret, 0, 64, 8) on fork",
    "@sched[pid] = count() on sched",
]
#: Stops on the way, each followed by the instance tables and the probes' counts.
BUDGETS = (30_000, 60_000, 150_000, 400_000)


def run_session(mode: str, commands: list[str], tmp_path) -> dict:
    out = io.StringIO()
    s = Session(output=Output(stream=out, color=False))
    s.batch = True
    s.execute(f"set trace-hits {mode}")
    for c in commands:
        s.execute(c)
    for budget in BUDGETS:
        s.execute(f"run {budget}")
        s.execute("instances")
        s.execute("probes")
        s.execute("maps")
    s.execute("run")
    s.execute("instances")
    s.execute("probes")
    s.execute("maps")
    dat = tmp_path / f"{mode}.dat"
    s.execute(f"trace save {dat}")
    s.out.flush()
    kprobes = s.machine.kprobes
    return {
        "text": out.getvalue().replace(str(dat), "FILE.dat"),
        "dat": dat.read_bytes(),
        "counts": {n: (up.obj.hits, up.obj.nmissed) for n, up in s.probes.items()},
        "c_counts": {n: (up.obj.c_hits.value, getattr(up.obj, "c_nmissed", None) and up.obj.c_nmissed.value)
                     for n, up in s.probes.items()},
        "entries": dict(kprobes.optimizer.c_hits.recorded) if kprobes.optimizer.c_hits is not None else {},
        "returns": dict(kprobes.kretprobes.c_returns.recorded),
        "problems": kprobes.check_invariants(),
        "flushed": set(kprobes.kretprobes._flushed_tasks),
    }


@pytest.fixture(scope="module")
def both(kernel_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("returns")
    return run_session("python", WORKLOAD, tmp), run_session("c", WORKLOAD, tmp)


def test_the_workloads_return_events_are_the_same_in_c_and_in_python(both):
    py, c = both
    assert c["text"] == py["text"]
    assert c["dat"] == py["dat"]
    assert c["counts"] == py["counts"]
    assert c["flushed"] == py["flushed"]
    assert c["problems"] == py["problems"] == []


def test_the_c_run_took_its_entries_and_returns_in_c(both):
    py, c = both
    assert py["entries"] == {} and py["returns"] == {}
    assert len(c["entries"]) == 4 and len(c["returns"]) == 5  # recin+rec share an entry; vread's is an int3
    for n, (hits, missed) in c["c_counts"].items():
        assert hits == c["counts"][n][0] > 0  # every hit and return counted by C
    missed = {n: c_missed for n, (_hits, c_missed) in c["c_counts"].items() if c_missed}
    assert missed and all(c["counts"][n][1] >= m for n, m in missed.items())  # exhaustion seen in C


def test_recursion_exhaustion_and_exit_are_in_the_workload(both):
    _py, c = both
    text = c["text"]
    assert "probe 2 (path_lookup_recursive) missed" in text  # maxactive 3 under recursion
    assert c["flushed"]  # a task died with an instance of schedule outstanding
    assert "rec: (" in text and "recin: (" in text and "(fault)" not in text.split("open:")[0]
    for name in ("@opens", "@depth", "@read", "@forks", "@sched"):
        assert text.count(name) >= 2, name  # each map has entries by the end


def test_an_entry_handler_or_narration_keeps_the_python_path(kernel_path, tmp_path):
    out = io.StringIO()
    s = Session(output=Output(stream=out, color=False))
    s.batch = True
    s.execute("r:open do_sys_open ret=$retval")
    s.execute("explain on")
    s.execute("run 60000")
    kprobes = s.machine.kprobes
    assert kprobes.optimizer.c_hits.recorded == {} and kprobes.kretprobes.c_returns.recorded == {}
    s.execute("explain off")
    s.execute("run 100000")
    assert kprobes.kretprobes.c_returns.recorded
    rp = s.probes[1].obj
    rp.entry_handler = lambda ri, regs: 0
    s.execute("run 100000")
    assert kprobes.optimizer.c_hits.recorded == {}  # its entry runs the entry_handler in Python


@pytest.mark.parametrize("mode", ["boost", "single-step"])
def test_other_modes_are_the_same_in_c_and_in_python(kernel_path, tmp_path, mode):
    """Without jump-optimized entries the entries run in Python (int3), and the returns come
    back through the int3 trampoline (these modes plant it, not the booster); the instance
    table is the same C one either way."""
    py = run_session("python", [f"set kprobe-mode {mode}"] + WORKLOAD, tmp_path)
    c = run_session("c", [f"set kprobe-mode {mode}"] + WORKLOAD, tmp_path)
    assert c["entries"] == {} and c["text"] == py["text"] and c["dat"] == py["dat"]
    assert c["counts"] == py["counts"] and c["problems"] == py["problems"] == []

"""Hits recorded in C (kprobes/chits.py, tracing/_hit.c) against the Python path they
replace (`set trace-hits python`): the same trace text, the same trace.dat bytes, the
same hit and nmissed counts, the same maps, on the bundled workload and on every demo;
and the choice of path follows what decides it (commands, explain, stacks, maps)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.script import run_lines
from kprobe_shell.shell.session import Session

DEMOS = Path(__file__).resolve().parents[2] / "scripts" / "demos"

WORKLOAD = [
    "jprobe ip_queue_xmit jip_queue_xmit",          # its guest handler calls printk: nmissed
    "p:pk printk fmt=+0(%di):string a=%si:s32 b=%dx:x16",
    "kprobe schedule",
    "p:open do_sys_open path=+0(%si):string flags=%dx:x32 mode=%cx:u16 dfd=%di:s32 if flags >= 0 && path != \"x\"",
    "p:fork do_fork flags=%di:x64 sp=$stack ch=+0(%si):char bf=+0(%sp):b3@2/8 bad=+0(%ax):u32 badstr=+0(%ax):string "
    "c=$comm",
    "@n[comm] = count() on open",
    "@p[path, pid] = count() on open",
    "@f = hist(flags) on open",
    "@l[cpu] = lhist(mode, 0, 1024, 128) on open",
    "@s = stats(dfd) on open",
    "@m[comm] = max(a) on pk",
]


def run_session(mode: str, commands: list[str], tmp_path, lines_of: str | None = None) -> dict:
    out = io.StringIO()
    s = Session(output=Output(stream=out, color=False))
    s.batch = True
    s.execute(f"set trace-hits {mode}")
    if lines_of is not None:
        run_lines(s, commands, lines_of)
    else:
        for c in commands:
            s.execute(c)
        s.execute("run")
    dat = tmp_path / f"{mode}.dat"
    s.execute(f"trace save {dat}")
    s.execute("probes")
    s.execute("maps")
    s.out.flush()
    counts = {n: (getattr(up.obj, "hits", up.hits), getattr(up.obj, "nmissed", None)) for n, up in s.probes.items()}
    c_hits = s.machine.kprobes.optimizer.c_hits
    text = out.getvalue().replace(str(dat), "FILE.dat")
    return {"text": text, "dat": dat.read_bytes() if dat.exists() else b"", "counts": counts,
            "recorded": dict(c_hits.recorded) if c_hits is not None else {}}


@pytest.mark.parametrize("buffer", [[], ["set trace-buffer-size 8"], ["set trace-buffer-size 8",
                                                                    "set trace-overwrite off"]],
                         ids=["default", "overwrite", "drop-new"])
def test_the_workload_traces_the_same_in_c_and_in_python(kernel_path, tmp_path, buffer):
    py = run_session("python", buffer + WORKLOAD, tmp_path)
    c = run_session("c", buffer + WORKLOAD, tmp_path)
    assert py["recorded"] == {} and len(c["recorded"]) == 4  # pk, schedule, open, fork
    assert c["counts"] == py["counts"]
    assert c["text"] == py["text"]
    assert c["dat"] == py["dat"]
    assert any(missed for _hits, missed in c["counts"].values())  # printk inside the jprobe's handler
    assert "(fault)" in c["text"] and "@p[" in c["text"]


@pytest.mark.parametrize("demo", sorted(p.name for p in DEMOS.glob("*.kps")))
def test_each_demo_is_the_same_in_c_and_in_python(kernel_path, tmp_path, demo):
    lines = (DEMOS / demo).read_text().splitlines()
    py = run_session("python", lines, tmp_path, lines_of=demo)
    c = run_session("c", lines, tmp_path, lines_of=demo)
    assert c["text"] == py["text"]
    assert c["dat"] == py["dat"]
    assert c["counts"] == py["counts"]
    if demo.startswith("09"):  # its p:opens and p:w record in C
        assert len(c["recorded"]) == 2


def test_what_needs_python_keeps_the_probe_in_python(kernel_path):
    s = Session(output=Output(stream=io.StringIO(), color=False))
    s.execute("p:open do_sys_open path=+0(%si):string")
    s.execute("kprobe schedule")
    s.execute("run 200000")
    c_hits = s.machine.kprobes.optimizer.c_hits
    assert len(c_hits.recorded) == 2
    # made again before every run: commands, a stack, explain, a glob filter
    s.probes[1].commands.append("print $rdi")
    s.execute("set trace-stack on")
    s.execute("run 100000")
    assert c_hits.recorded == {}
    s.execute("set trace-stack off")
    s.probes[1].commands.clear()
    s.execute("run 100000")
    assert len(c_hits.recorded) == 2
    s.execute("explain on")
    s.execute("run 1000")
    assert c_hits.recorded == {}
    s.execute("explain off")
    s.execute("set trace-hits python")
    s.execute("run 1000")
    assert c_hits.recorded == {}
    s.execute("set trace-hits c")
    s.execute('p:g do_fork c=$comm if c ~ "ini*"')  # a glob: matched in Python
    s.execute("run 1000")
    assert set(c_hits.recorded) == {s.probes[1].addr, s.probes[2].addr}


def test_json_output_is_the_same_in_c_and_in_python(kernel_path):
    """--json: each live event an object of its own, rendered from the C records alike."""
    got = {}
    for mode in ("python", "c"):
        out = io.StringIO()
        s = Session(output=Output(stream=out, color=False, json_mode=True))
        s.execute(f"set trace-hits {mode}")
        for c in WORKLOAD + ["run"]:
            s.execute_and_report(c)
        s.out.flush()
        got[mode] = out.getvalue()
        assert bool(s.machine.kprobes.optimizer.c_hits.recorded) == (mode == "c")
    assert got["c"] == got["python"]


def test_the_last_probe_hit_a_stop_names_may_be_a_c_record(kernel_path):
    """A fault or BUG stop names the last probe hit: a hit recorded in C counts too."""
    said = {}
    for mode in ("python", "c"):
        s = Session(output=Output(stream=io.StringIO(), color=False))
        s.execute(f"set trace-hits {mode}")
        s.execute("kprobe do_fork")
        s.execute("p:open do_sys_open path=+0(%si):string")
        s.execute("run 300000")
        said[mode] = s._last_probe_hit()
        assert bool(s.machine.kprobes.optimizer.c_hits.recorded) == (mode == "c")
    assert said["c"] == said["python"] and said["c"].startswith("probe ")


@pytest.mark.parametrize("setup", [["set cpus 2", "reset"], ["set kprobe-mode boost"]], ids=["smp", "boost"])
def test_nothing_records_in_c_where_nothing_is_optimized(kernel_path, tmp_path, setup):
    """SMP (no optimization, see optimize.py) and int3 probes keep the Python path, with
    the same trace as `set trace-hits python` gives."""
    commands = setup + ["p:open do_sys_open path=+0(%si):string", "kprobe schedule"]
    c = run_session("c", commands, tmp_path)
    py = run_session("python", commands, tmp_path)
    assert c["recorded"] == {} and c["text"] == py["text"] and c["counts"] == py["counts"]


def test_a_replaced_machine_is_freed(kernel_path):
    """The C table borrows the probes it records: nothing hides a cycle from the collector,
    so `reset` frees the machine it replaces, C-recorded probes and maps and all."""
    import gc
    import weakref

    s = Session(output=Output(stream=io.StringIO(), color=False))
    s.execute("p:open do_sys_open path=+0(%si):string")
    s.execute("@n[comm] = count() on open")
    s.execute("run 200000")
    assert s.machine.kprobes.optimizer.c_hits.recorded
    old = weakref.ref(s.machine)
    s.execute("reset")
    gc.collect()
    assert old() is None


def test_a_map_line_with_many_key_parts_stays_in_python(kernel_path, tmp_path):
    commands = ["p:open do_sys_open path=+0(%si):string",
                "@k[comm, pid, cpu, path, comm, pid, cpu, path, comm] = count() on open"]
    c = run_session("c", commands, tmp_path)
    py = run_session("python", commands, tmp_path)
    assert c["recorded"] == {} and c["text"] == py["text"] and "@k[" in c["text"]

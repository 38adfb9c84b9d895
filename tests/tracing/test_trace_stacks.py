"""Stacks with trace events (`set trace-stack on`, `trigger EVENT stacktrace`), and the
trace saved as folded stacks and as Chrome Trace Event JSON."""
from __future__ import annotations

import io
import json

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session
from kprobe_shell.tracing import stacks
from kprobe_shell.tracing.trace import TraceEvent

# Return probes on every caller of do_sys_open: each stack walks through trampoline slots.
PROBES = ["p:open do_sys_open name=+0(%si):string", "r:openr do_sys_open ret=$retval:s64",
          "kretprobe sys_open", "kretprobe cat_file"]


def session_with(lines, mode="auto", cpus=1) -> tuple[Session, io.StringIO]:
    buf = io.StringIO()
    s = Session(output=Output(stream=buf, color=False))
    if cpus != 1:
        s.execute(f"set cpus {cpus}")
        s.execute("reset")
    s.execute(f"set kprobe-mode {mode}")
    for line in lines:
        s.execute(line)
    return s, buf


@pytest.fixture(scope="module", params=[("auto", 1), ("single-step", 1), ("auto", 2)],
                ids=["auto", "single-step", "auto-2cpus"])
def stacked(request, kernel_path):
    s, buf = session_with(PROBES + ["set trace-stack on"], *request.param)
    s.execute("run 300000")
    return s, buf


def test_every_event_has_its_stack_without_trampolines(stacked):
    s, _ = stacked
    events = s.trace.events
    assert events and all(ev.stack for ev in events)
    opens = [ev for ev in events if ev.event == "open"]
    assert opens
    for ev in opens:
        assert ev.stack[0].startswith("do_sys_open+0x0/") and ev.stack[1].startswith("sys_open+")
        assert ev.stack[2].startswith("cat_file+") or ev.stack[2].split("+")[0].endswith("_main")
    for ev in events:
        assert not any("kretprobe_trampoline" in f or f.startswith("0x") for f in ev.stack), ev.stack
    returns = [ev for ev in events if ev.event == "openr"]
    assert returns and all(ev.stack[0] == ev.where.split(" <- ")[0] for ev in returns)


def test_trace_show_prints_the_stack_under_its_event(stacked):
    s, _ = stacked
    text = s.trace.lines()[0].splitlines()
    assert text[1].endswith(": <stack trace>") and text[2].startswith(" => ")
    assert len(text) == 2 + len(s.trace.events[0].stack)


def test_folded_counts_add_up_to_the_hits(stacked, tmp_path):
    s, _ = stacked
    s.execute(f"trace save --format folded {tmp_path / 'out.folded'}")
    lines = (tmp_path / "out.folded").read_text().splitlines()
    counts = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert sum(counts) == len(s.trace.events)
    assert len({line.rsplit(" ", 1)[0] for line in lines}) == len(lines)  # one line per distinct stack
    assert not any("kretprobe_trampoline" in line for line in lines)
    assert any(line.startswith("child_rip;") and ";cat_file;sys_open;do_sys_open " in line for line in lines)


def check_chrome(doc: dict, entries: int) -> None:
    """Valid, slices nest on each track, every entry has its return or says unfinished."""
    slices: dict[int, list[dict]] = {}
    for e in doc["traceEvents"]:
        assert e["ph"] in ("M", "X", "i")
        if e["ph"] == "X":
            assert e["dur"] >= 0
            assert "return" in e["args"] or e["args"].get("unfinished") is True
            slices.setdefault(e["tid"], []).append(e)
    for track in slices.values():
        track.sort(key=lambda e: (e["ts"], -e["dur"]))
        open_ends: list[float] = []
        for e in track:
            while open_ends and open_ends[-1] <= e["ts"]:
                open_ends.pop()
            end = round(e["ts"] + e["dur"], 3)
            assert not open_ends or end <= open_ends[-1], f"{e} overlaps its parent"
            open_ends.append(end)
    assert sum(len(t) for t in slices.values()) == entries  # one slice per entry hit


def test_chrome_trace_is_valid_and_nests(stacked, tmp_path):
    s, _ = stacked
    s.execute(f"trace save --format chrome {tmp_path / 'out.json'}")
    doc = json.loads((tmp_path / "out.json").read_text())
    check_chrome(doc, sum(1 for e in s.trace.events if e.event == "open"))
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert "CPU 0" in names and "opener1-2" in names


def ev(t, pid, event, where, kind="k"):
    return TraceEvent(time_ns=t, comm="t", pid=pid, cpu=0, event=event, where=where, kind=kind)


def test_chrome_marks_entries_that_never_returned():
    events = [ev(10, 1, "pa", "a+0x0/0x10"), ev(20, 1, "pb", "b+0x0/0x10"),
              ev(30, 1, "ra", "x+0x5/0x9 <- a", "r"),         # b never returned
              ev(40, 1, "pa", "a+0x0/0x10"),                  # still open at the end
              ev(50, 1, "rb", "y+0x1/0x9 <- b", "r"),         # a return without its entry: an instant
              ev(60, 2, "hit", "c+0x4/0x10")]
    doc = stacks.chrome_trace(events)
    check_chrome(doc, 3)
    spans = sorted((e["name"], e["ts"], e["dur"], bool(e["args"].get("unfinished")))
                   for e in doc["traceEvents"] if e["ph"] == "X")
    assert spans == [("a", 0.01, 0.02, False), ("a", 0.04, 0.02, True), ("b", 0.02, 0.01, True)]
    instants = [e["name"] for e in doc["traceEvents"] if e["ph"] == "i" and e["pid"] == stacks.TASKS_PID]
    assert instants == ["rb", "hit"]


def test_trigger_records_one_events_stack_and_explain_says_what_was_resolved(kernel_path):
    s, buf = session_with(["p:open do_sys_open name=+0(%si):string", "kprobe do_fork", "kretprobe sys_open",
                           "trigger open stacktrace", "explain on"])
    s.execute("run 120000")
    opens = [e for e in s.trace.events if e.event == "open"]
    assert opens and all(e.stack for e in opens)
    assert all(not e.stack for e in s.trace.events if e.event != "open")
    assert "stacktrace: frame #2 held kretprobe_trampoline: the task's kretprobe instance gives " \
           "the real return address cat_file+0x24/" in buf.getvalue()
    s.execute("trigger open !stacktrace")
    assert "emit_trace" not in vars(s)  # the plain hit path again
    with pytest.raises(CommandError, match="no event 'nope'"):
        s.execute("trigger nope stacktrace")
    with pytest.raises(CommandError, match="usage: trigger EVENT stacktrace"):
        s.execute("trigger open")


def test_trace_stack_off_leaves_the_hit_path_alone(kernel_path):
    s, _ = session_with(["p:open do_sys_open"])
    assert "emit_trace" not in vars(s)
    s.execute("set trace-stack on")
    assert vars(s)["emit_trace"] == s.stacks.emit_trace
    s.execute("set trace-stack off")
    assert "emit_trace" not in vars(s)

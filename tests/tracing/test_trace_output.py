"""Trace lines are rendered off the hot path: a probe hit stores the event record, and the
output renders the records later, in order with everything else it writes."""
from __future__ import annotations

import io
import json

from kprobe_shell.shell.output import Output
from kprobe_shell.tracing.trace import TraceEvent


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def event(i: int) -> TraceEvent:
    return TraceEvent(time_ns=1000 + i, comm="workload", pid=3, cpu=0, event="p_hot_0",
                      where="hot+0x0/0x8", args=f" x=0x{i:x}", values={"x": i})


def test_a_hit_renders_nothing_until_something_else_is_written():
    stream = io.StringIO()
    out = Output(stream, color=False)
    for i in range(3):
        out.trace(event(i))
    assert stream.getvalue() == ""
    out.event({"type": "console", "text": "hello"}, "hello", "console")
    assert stream.getvalue().splitlines() == [event(0).ftrace(), event(1).ftrace(), event(2).ftrace(), "hello"]
    out.trace(event(3))
    out.flush()
    assert stream.getvalue().splitlines()[-1] == event(3).ftrace()


def test_a_full_batch_is_rendered_at_once():
    stream = io.StringIO()
    out = Output(stream, color=False)
    for i in range(Output.TRACE_BATCH - 1):
        out.trace(event(i))
    assert stream.getvalue() == ""
    out.trace(event(Output.TRACE_BATCH))
    assert len(stream.getvalue().splitlines()) == Output.TRACE_BATCH


def test_a_terminal_sees_each_line_at_once():
    stream = Tty()
    out = Output(stream, color=True)
    out.trace(event(0))
    assert event(0).ftrace() in stream.getvalue()
    assert stream.getvalue().startswith("\x1b[")  # in the trace colour


def test_json_events_keep_their_place_too():
    stream = io.StringIO()
    out = Output(stream, json_mode=True)
    out.trace(event(0))
    out.error("boom")
    objs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [o["type"] for o in objs] == ["trace", "error"]
    assert objs[0]["args"] == {"x": 0}

"""Probe definitions mutated character by character from good ones: each is placed and
traced (run to the end), or refused with one CommandError; the invariants hold after."""
from __future__ import annotations

import io

import pytest
from fuzzsettings import each_example_bounded, profile_settings
from hypothesis import given
from hypothesis import strategies as st

from harness import session_state
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session

GOOD = [
    "p:e1 leaf x=%di p=%si",
    "p leaf x p",
    "r walk ret=$retval:s64",
    "p:g/e2 walk+0 d=%di:s32 if d > 1 && d < 9",
    "p leaf s=+0(+16(%si)):string c=$comm",
    "r4 leaf $retval",
    "p walk $arg1 $arg2 $stack0",
    "p leaf a=@counter:u64 b=%di:b4@0/8",
]
NOISE = list("%$+-()@:=!&|<>~\"'\\/ 0123456789abcxyzٌ٣²\x00\x1b") + ["0x10000000000000000", "9" * 30, "((((", "!!!!"]


@st.composite
def mutated(draw):
    line = list(draw(st.sampled_from(GOOD)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(line)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(NOISE))
        if op == "insert" or not line:
            line[pos:pos] = [piece]
        elif op == "delete":
            del line[min(pos, len(line) - 1)]
        else:
            line[min(pos, len(line) - 1)] = piece
    return "".join(line)


@pytest.mark.timeout(300)
@profile_settings(80)
@given(lines=st.lists(mutated(), min_size=1, max_size=3))
@each_example_bounded
def test_mutated_probe_definitions(fuzz_image, lines):
    s = Session(fuzz_image, output=Output(io.StringIO(), color=False), timer_period=500)
    for line in lines:
        before = session_state(s)
        try:
            s.execute(line)
        except CommandError as exc:
            assert not str(exc).startswith("internal error"), (line, str(exc))
            assert session_state(s) == before, f"refused {line!r} changed the session"
        assert s.machine.kprobes.check_invariants() == []
    s.execute("run")
    assert "fuzz guest ok" in s.machine.console
    assert "internal error" not in s.out.stream.getvalue()
    assert s.machine.kprobes.check_invariants() == []

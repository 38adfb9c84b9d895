"""Narration: every event the engine can emit has its wording in narrate.py, and the
engine's modules build events, never sentences."""
from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine, StopReason
from kprobe_shell.kprobes import narrate

ENGINE = Path(narrate.__file__).parent


def test_every_event_has_a_renderer():
    events = {obj for _name, obj in inspect.getmembers(narrate, inspect.isclass)
              if dataclasses.is_dataclass(obj) and obj.__module__ == narrate.__name__}
    assert events == set(narrate._RENDERERS)


def test_the_engine_calls_the_narrator_only_through_narrate():
    """Nothing but KprobeEngine.narrate hands text to the narrator: the wording stays here."""
    calls = []
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("narrator", "say")):
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == ["core.py:" + str(_narrate_call_line())]


def _narrate_call_line() -> int:
    from kprobe_shell.kprobes.core import KprobeEngine

    lines, start = inspect.getsourcelines(KprobeEngine.narrate)
    return start + next(i for i, line in enumerate(lines) if "self.narrator(" in line)


@pytest.mark.parametrize("mode", ["single-step", "boost", "optimize", "auto"])
def test_nothing_is_narrated_when_nobody_listens(engine_path, monkeypatch, mode):
    """Explain off: every path tests narrator first and hands nothing on (narrate()
    would fail without a narrator, so a missing test would show as a failed run too)."""
    from kprobe_shell.kprobes.core import KprobeEngine

    calls = []
    monkeypatch.setattr(KprobeEngine, "narrate", lambda self, event: calls.append(type(event).__name__))

    def run(narrator):
        m = Machine(engine_path)
        m.kprobes.narrator = narrator
        m.kprobes.set_mode(mode)
        m.register_kprobe(Kprobe("p_add", pre_handler=lambda p, regs: 0, post_handler=lambda p, regs, f: None))
        for _ in range(2):  # an aggregate
            m.register_kprobe(Kprobe("p_after", pre_handler=lambda p, regs: 0))
        m.register_kretprobe(Kretprobe("step_fn", lambda ri, regs: 0))
        m.register_jprobe(Jprobe("jtarget", "j_handler"))
        assert m.run().reason is StopReason.HALTED

    run(None)
    assert calls == []
    run(lambda text: None)
    assert {"Armed", "ProbeHit", "KretprobeEntry", "JprobeSetjmp"} <= set(calls)

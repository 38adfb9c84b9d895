"""Fixtures shared by the engine tests: the engine test guest and its unprobed run."""
from __future__ import annotations

import pytest

from harness import snapshot
from kprobe_shell import Machine, StopReason


@pytest.fixture(scope="session")
def engine_path(build_guest):
    return build_guest("engine")


@pytest.fixture(scope="session")
def ref(engine_path):
    """What the engine guest computes with no probe: the reference every probed run matches."""
    m = Machine(engine_path)
    assert m.run().reason is StopReason.HALTED
    assert m.console.startswith("s=0x2\ns=0x4\n")
    return snapshot(m)

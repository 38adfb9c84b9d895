"""Shared fixtures: test guests built once per session, and the bundled kernel.

`build_guest(name)` compiles tests/guests/<name>.c (static, non-PIE, freestanding) into a
session temporary directory on first use and returns the ELF's path.  `kernel_path`
skips the test, with the reason, when the bundled minikernel has not been built.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

GUESTS = Path(__file__).resolve().parent / "guests"
if str(GUESTS) not in sys.path:
    sys.path.insert(0, str(GUESTS))

import guestbuild  # noqa: E402


@pytest.fixture(scope="session")
def build_guest(tmp_path_factory):
    """build_guest(name, *, debug=False, extra=(), flags=None, tag='') -> path of the ELF."""
    guestbuild.require_compiler()
    out_dir = tmp_path_factory.mktemp("guests")
    built: dict[tuple, str] = {}

    def build(name: str, *, debug: bool = False, extra: tuple[str, ...] = (),
              flags: tuple[str, ...] | None = None, tag: str = "", source: str | None = None) -> str:
        key = (name, debug, tuple(extra), flags, tag, source)
        if key not in built:
            src = source or f"{name}.c"
            out = out_dir / f"{name}{('-' + tag) if tag else ''}{'-g' if debug else ''}.elf"
            guestbuild.compile_guest(
                src, out, debug=debug, extra=tuple(extra),
                **({"flags": flags} if flags is not None else {}),
            )
            built[key] = str(out)
        return built[key]

    return build


def _bundled_kernel() -> str:
    from kprobe_shell.images import bundled_image_path

    return bundled_image_path()


@pytest.fixture(scope="session")
def kernel_path():
    """The bundled minikernel's path; the test is skipped when it is not built (yet)."""
    path = _bundled_kernel()
    if not os.path.isfile(path):
        pytest.skip(f"the bundled kernel {path} is not built")
    from kprobe_shell import ImageError, Machine

    try:
        Machine()
    except ImageError as exc:  # pragma: no cover - a half-built kernel
        pytest.skip(f"the bundled kernel cannot be loaded: {exc}")
    return path


@pytest.fixture
def kernel(kernel_path):
    """A fresh machine on the bundled kernel."""
    from kprobe_shell import Machine

    return Machine()


# ---------------------------------------------------------------------------- engine invariants
#: Test directories whose machines get their engine invariants checked after every test.
INVARIANT_DIRS = ("kprobes", "shell", "integration", "property")
STRONG_ENGINE_REFS = 64


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "no_invariants: the test leaves an engine broken on purpose; skip the after-test check")


@pytest.fixture(autouse=True)
def engine_invariants(request, monkeypatch):
    """After each engine/shell test: every machine the test made (and did not leave
    running) satisfies KprobeEngine.check_invariants(): no stray 0xcc, slots free or
    owned, no instance of a dead task, free + used == maxactive, ..."""
    parts = Path(str(request.node.fspath)).parts
    if not any(d in parts for d in INVARIANT_DIRS) or request.node.get_closest_marker("no_invariants"):
        yield
        return
    import weakref

    from kprobe_shell.kprobes.core import KprobeEngine

    # Strong references, so machines local to the test body are checked too; but only the
    # first few: a property test makes thousands of machines (each with unicorn's code
    # buffers), and checks its own after every example.
    engines: list = []
    original = KprobeEngine.__init__

    def recording_init(self, machine, *args, **kwargs):
        original(self, machine, *args, **kwargs)
        engines.append(self if len(engines) < STRONG_ENGINE_REFS else weakref.ref(self))

    monkeypatch.setattr(KprobeEngine, "__init__", recording_init)
    yield
    monkeypatch.undo()
    try:
        for engine in engines:
            if isinstance(engine, weakref.ref):
                engine = engine()
            if engine is None or engine.machine.running:
                continue
            problems = engine.check_invariants()
            assert problems == [], f"engine invariants broken after the test: {problems}"
    finally:
        engines.clear()

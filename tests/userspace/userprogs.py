"""Helpers for the user-process tests (the fixtures are in conftest.py)."""
from __future__ import annotations

COMPILERS = {"glibc": ["gcc", "-static"], "musl": ["musl-gcc", "-static"]}
LIBCS = tuple(COMPILERS)


def program_output(console: str, pid: int = 2) -> str:
    """What the program with this pid wrote: the console between init starting it and
    init reaping it (the tests run one program, so nothing else writes meanwhile)."""
    start = console.index(f" -> pid {pid}\n") + len(f" -> pid {pid}\n")
    end = console.index(f"init: reaped pid {pid} ")
    return console[start:end]

"""Building the small C test guests (static, non-PIE, freestanding x86_64 ELF images).

The tests build each guest once per session (see tests/conftest.py) into a temporary
directory; nothing built is kept in the tree.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GUESTS_DIR = Path(__file__).resolve().parent
CC = os.environ.get("CC", "gcc")

#: What every guest is built with: no libc, fixed addresses, no SSE, no CET.
BASE_FLAGS = (
    "-O2", "-ffreestanding", "-nostdlib", "-static", "-no-pie", "-fno-pic",
    "-fcf-protection=none", "-mgeneral-regs-only", "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables", "-Wl,--build-id=none", "-Wl,-z,noexecstack",
    "-Wall", "-Wno-unused-function",
)


class BuildError(RuntimeError):
    pass


def have_compiler() -> bool:
    return shutil.which(CC) is not None


def require_compiler() -> None:
    """Skip the calling test or fixture, saying why, when there is no C compiler: a
    missing compiler is the environment's limit, not a failure of the code under test."""
    if not have_compiler():
        import pytest

        pytest.skip(f"no C compiler to build the test guests: {CC!r} not found (set CC to one)")


def compile_guest(source: str | Path, out: str | Path, *, flags: tuple[str, ...] = BASE_FLAGS,
                  extra: tuple[str, ...] = (), debug: bool = False) -> Path:
    """Compile one guest source (C or assembly) into an ELF executable at out; under
    pytest, skips the caller when there is no compiler (see require_compiler)."""
    require_compiler()
    source = Path(source)
    if not source.is_absolute():
        source = GUESTS_DIR / source
    out = Path(out)
    cmd = [CC, *flags, *(("-g",) if debug else ()), *extra, "-I", str(GUESTS_DIR), "-o", str(out), str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)}\n{proc.stderr}")
    return out

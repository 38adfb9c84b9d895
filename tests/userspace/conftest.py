"""Static Linux programs for the user-process tests, built once per session.

`build_program(name, libc)` compiles programs/<name>.c with `gcc -static` (glibc) or
`musl-gcc -static` (musl, Debian's musl-tools) and returns the path; the test is skipped,
with the reason, when that compiler is missing.  The file is named NAME-LIBC, so it runs
in the guest as /bin/NAME-LIBC.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs"
from userprogs import COMPILERS  # noqa: E402


@pytest.fixture(scope="session")
def build_program(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("programs")
    built: dict[tuple, str] = {}

    def build(name: str, libc: str = "glibc", *, extra: tuple[str, ...] = (), tag: str = "") -> str:
        key = (name, libc, extra, tag)
        if key not in built:
            cc = COMPILERS[libc]
            if shutil.which(cc[0]) is None:
                pytest.skip(f"{cc[0]} is not installed (Debian: apt-get install "
                            f"{'musl-tools' if libc == 'musl' else 'gcc'}): cannot build {libc} programs")
            out = out_dir / f"{name}-{libc}{tag}"
            # extra replaces -static when it says how to link (-static-pie, -dynamic)
            link = [] if {"-static-pie", "-dynamic"} & set(extra) else cc[1:]
            cmd = [cc[0], *link, "-O2", "-o", str(out), str(PROGRAMS / f"{name}.c"),
                   *(x for x in extra if x != "-dynamic")]
            subprocess.run(cmd, check=True, capture_output=True)
            built[key] = str(out)
        return built[key]

    return build


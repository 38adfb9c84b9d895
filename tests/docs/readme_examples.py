"""Checked examples in the project's markdown files.

The convention (an HTML comment, invisible on the rendered page, just before a code block,
fenced or indented):

    <!-- example-file: NAME -->      the next block is the file NAME of the examples below it
    <!-- example-run: ARGS -->       the next block is what `kprobe-shell ARGS` prints

A run happens in a scratch directory holding the files the document defined above it,
and `examples/`, the bundled example programs (guest_images/examples).
Every line of the output block must be a line the shell printed, in the same order; lines
the text leaves out (the guest's console lines, say, or where it writes `...`) may lie
between them.  Lines are compared exactly, trailing blanks aside: nothing is normalised,
because the shell's output is deterministic (the virtual clock).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MARKER = re.compile(r"^<!-- example-(file|run): (.+?) -->$")


@dataclass
class Example:
    """One example-run block, with the files defined before it in its document."""

    document: str
    line: int  # of the marker, 1-based
    args: str
    expected: list[str]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{Path(self.document).name}:{self.line}"


def _block_after(lines: list[str], i: int) -> list[str]:
    """The code block that starts after line i (skipping blank lines): fenced or indented."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines) and lines[i].startswith("```"):
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        return lines[i + 1:end]
    block: list[str] = []
    while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
        block.append(lines[i][4:])
        i += 1
    while block and not block[-1].strip():
        block.pop()
    if not block:
        raise ValueError(f"line {i}: an example marker must be followed by a code block")
    return block


def examples(path: Path) -> list[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    files: dict[str, str] = {}
    found = []
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if not m:
            continue
        block = _block_after(lines, i + 1)
        if m.group(1) == "file":
            files[m.group(2)] = "\n".join(block) + "\n"
        else:
            found.append(Example(str(path), i + 1, m.group(2), block, dict(files)))
    return found


def run_example(example: Example, workdir: Path) -> str:
    """What the shell prints for the example (stdout, then stderr)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in example.files.items():
        (workdir / name).write_text(text, encoding="utf-8")
    examples_dir = workdir / "examples"  # the bundled example programs, as `examples/wc`
    if not examples_dir.exists():
        examples_dir.symlink_to(Path(__file__).resolve().parents[2] / "guest_images" / "examples")
    env = dict(os.environ, XDG_CONFIG_HOME=str(workdir / ".config"), XDG_DATA_HOME=str(workdir / ".data"))
    r = subprocess.run([sys.executable, "-m", "kprobe_shell", *shlex.split(example.args)], cwd=workdir,
                       capture_output=True, text=True, env=env, timeout=300)
    return r.stdout + r.stderr


def mismatch(expected: list[str], output: str) -> str | None:
    """None when every expected line (but `...`) is an output line, in order; else the first
    line that is not."""
    printed = [line.rstrip() for line in output.splitlines()]
    at = 0
    for line in expected:
        if line.strip() == "...":
            continue
        try:
            at = printed.index(line.rstrip(), at) + 1
        except ValueError:
            return line
    return None

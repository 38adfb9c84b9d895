"""The README's tutorial is true: its command file, run as the README says, prints every line
the README pastes, in the same order (the `...` marks where the README trims)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tutorial_blocks() -> tuple[list[str], list[str]]:
    """(the lines of tut.kps, the pasted output lines) from the README's Tutorial section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Tutorial: from install to the instance table", 1)[1].split("\n## ", 1)[0]
    blocks, current = [], []
    for line in section.splitlines():
        if line.startswith("    "):
            current.append(line[4:])
        elif current and line.strip() == "":
            continue
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    script = next(b for b in blocks if b and b[0] == "kretprobe do_sys_open")
    pasted = next(b for b in blocks if b and b[0].startswith("Kretprobe 1 at "))
    return script, pasted


def test_the_tutorial_output_in_the_readme_is_what_the_shell_prints(tmp_path, kernel_path):
    script, pasted = tutorial_blocks()
    assert "instances" in script and any(line.startswith("kretprobe_inst_table: 64 buckets") for line in pasted)
    (tmp_path / "tut.kps").write_text("\n".join(script) + "\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"))
    r = subprocess.run([sys.executable, "-m", "kprobe_shell", "--batch", "-x", "tut.kps"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    at = 0
    for line in pasted:
        if line == "...":
            continue
        assert line in out[at:], f"README tutorial line not printed (in this order): {line!r}"
        at = out.index(line, at) + 1

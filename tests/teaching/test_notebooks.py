"""docs/notebooks: each is its demo, run headless again, with the same text in every cell.

Three checks per notebook: its cells are what scripts/make_notebooks.py builds from the
demo today (the notebook cannot drift from scripts/demos); executed again on a fresh
kernel (nbclient) each code cell shows the committed text, byte for byte; and that text,
end to end, is what the shell prints for the demo's commands in batch mode (the
differential check: the magics add and lose nothing).
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
pytest.importorskip("nbclient", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
pytest.importorskip("ipykernel", reason="the notebook extra is not installed (pip install -e '.[notebook]')")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import make_notebooks  # noqa: E402

DEMOS = sorted(make_notebooks.DEMOS.glob("*.kps"))


def test_every_demo_has_its_notebook_and_no_other():
    have = sorted(p.name for p in make_notebooks.NOTEBOOKS.glob("*.ipynb"))
    assert have == sorted(make_notebooks.notebook_path(d).name for d in DEMOS)


@pytest.mark.parametrize("demo", DEMOS, ids=lambda d: d.stem)
def test_notebook_cells_are_built_from_the_demo(demo):
    committed = nbformat.read(make_notebooks.notebook_path(demo), as_version=4)
    built = make_notebooks.build_notebook(demo)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells]


@pytest.mark.slow
@pytest.mark.parametrize("demo", DEMOS, ids=lambda d: d.stem)
def test_notebook_runs_headless_with_the_committed_outputs(demo, tmp_path):
    committed = nbformat.read(make_notebooks.notebook_path(demo), as_version=4)
    fresh = copy.deepcopy(committed)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    make_notebooks.execute(fresh, timeout=120)
    expected, got = make_notebooks.cell_texts(committed), make_notebooks.cell_texts(fresh)
    assert len(got) == len(expected)
    for i, (e, g) in enumerate(zip(expected, got)):
        assert g == e, f"code cell {i} of {demo.stem} shows other text than the committed notebook"
    assert not any("[error]" in t or "[stderr]" in t for t in got)
    # Differential: the demo's commands (its echo and pause lines are the text cells) in
    # batch mode print exactly what the cells show.
    commands = [line for line in demo.read_text(encoding="utf-8").splitlines()
                if line.strip() and line.split()[0] not in ("echo", "pause")]
    script = tmp_path / "commands.kps"
    script.write_text("\n".join(commands) + "\n", encoding="utf-8")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    batch = subprocess.run([sys.executable, "-m", "kprobe_shell", "--batch", "-x", str(script)], cwd=ROOT,
                           capture_output=True, text=True, env=env, timeout=120)
    assert batch.returncode == 0, batch.stderr
    shown = "".join(text for cell in fresh.cells if cell.cell_type == "code"
                    for _kind, text in make_notebooks.output_texts(cell))
    assert shown == batch.stdout

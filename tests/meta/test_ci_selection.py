"""What CI runs is what the README says, and nothing is left out of it: the README's test
command (every test but the ones marked slow) and then the slow ones."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"^    (python3 -m pip install .*pytest.*)$", text, re.M)
    assert found, "README.md shows no test command"
    return found.group(1)


def test_ci_runs_the_readmes_test_command_verbatim_then_the_slow_tests():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    command = readme_test_command()
    assert command in lines
    after = lines[lines.index(command) + 1:]
    assert after == ["python3 -m pytest -q -n auto -m slow"]


def test_the_default_selection_leaves_out_only_the_slow_marker():
    text = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11's; 3.10 is supported)
    assert re.search(r"""^addopts = "-ra -m 'not slow'"$""", text, re.M)
    assert re.findall(r'^markers = \["(\w+):', text, re.M) == ["slow"]

"""Every example in README.md and scripts/demos/README.md that shows output is run, and the
output must be what the README shows (the convention: tests/docs/readme_examples.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from readme_examples import examples, mismatch, run_example

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "scripts" / "demos" / "README.md"]
EXAMPLES = [ex for doc in DOCUMENTS for ex in examples(doc)]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, kernel_path):
    done: dict[str, str] = {}

    def output(example) -> str:
        if example.name not in done:
            done[example.name] = run_example(example, tmp_path_factory.mktemp("example"))
        return done[example.name]

    return output


def test_the_readme_has_checked_examples():
    names = {(Path(ex.document).name, ex.args) for ex in EXAMPLES}
    assert ("README.md", "--batch -x opens.kps") in names
    assert ("README.md", "--batch -x tut.kps") in names
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.name for ex in EXAMPLES])
def test_the_example_prints_what_the_readme_shows(example, outputs):
    wrong = mismatch(example.expected, outputs(example))
    assert wrong is None, (f"{example.name}: `kprobe-shell {example.args}` does not print this line "
                           f"(in this order):\n{wrong}\n--- it printed:\n{outputs(example)}")


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.name for ex in EXAMPLES])
def test_one_changed_character_in_any_line_is_caught(example, outputs):
    """The check has teeth: edit any shown line by one character and it fails."""
    printed = outputs(example)
    for n, line in enumerate(example.expected):
        if line.strip() in ("", "..."):
            continue
        k = len(line.rstrip()) // 2
        edited = line[:k] + ("#" if line[k] != "#" else "%") + line[k + 1:]
        changed = example.expected[:n] + [edited] + example.expected[n + 1:]
        assert mismatch(changed, printed) == edited, f"line {n} edited and not caught: {edited!r}"

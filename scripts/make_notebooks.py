#!/usr/bin/env python3
"""Build docs/notebooks/ from scripts/demos/*.kps and run them, so each notebook is its
demo: `echo` lines become the text cells, the commands between them `%%kps` cells, and
every cell's output is the real machine's.

    python3 scripts/make_notebooks.py            # all of them
    python3 scripts/make_notebooks.py 04         # the demos whose name starts with 04

Needs the notebook extra (pip install -e '.[notebook]').  The same demo gives the same
notebook: fixed cell ids, no timing metadata, outputs from the virtual clock.
tests/notebook/test_notebooks.py runs each notebook again and compares its outputs.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMOS = ROOT / "scripts" / "demos"
NOTEBOOKS = ROOT / "docs" / "notebooks"


def _blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """('text', echo texts) and ('code', command lines) in the order of the demo; a bare
    `pause` closes a block, as it is where the demo stops for the student."""
    blocks: list[tuple[str, list[str]]] = []
    for raw in lines:
        line = raw.rstrip("\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped == "pause":
            blocks.append(("break", []))
            continue
        word, _, rest = stripped.partition(" ")
        kind, item = ("text", rest) if word == "echo" else ("code", line)
        if word == "pause":
            kind, item = "text", f"**{rest}**"
        if blocks and blocks[-1][0] == kind:
            blocks[-1][1].append(item)
        else:
            blocks.append((kind, [item]))
    return [b for b in blocks if b[0] != "break"]


def _markdown(texts: list[str]) -> str:
    paragraphs, current = [], []
    for text in texts:
        if text.strip().startswith("==="):  # a demo's title or end line: a heading of its own
            if current:
                paragraphs.append(" ".join(current))
            paragraphs.append(text.strip())
            current = []
            continue
        if not text.strip():
            if current:
                paragraphs.append(" ".join(current))
            current = []
            continue
        current.append(text.strip())
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join("## " + p.strip("= ") if p.startswith("===") else p for p in paragraphs)


def build_notebook(demo: Path):
    """The notebook of one demo, without outputs."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [new_markdown_cell(f"*This notebook is `scripts/demos/{demo.name}`, run on the emulated machine "
                               f"(built by `scripts/make_notebooks.py`).*"),
             new_code_cell("%load_ext kprobe_shell")]
    for kind, items in _blocks(demo.read_text(encoding="utf-8").splitlines()):
        if kind == "text":
            text = _markdown(items)
            if text:
                cells.append(new_markdown_cell(text))
        else:
            cells.append(new_code_cell("%%kps\n" + "\n".join(items)))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nb


def execute(nb, timeout: int = 300):
    """Run a notebook headless, in the repository root, on a fresh kernel."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.metadata.pop("execution", None)
            cell.outputs = coalesce_streams(cell.outputs)
    return nb


def coalesce_streams(outputs: list) -> list:
    """One stream output where the kernel sent several in a row: how the text was cut
    into messages depends on timing, the text does not."""
    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def output_texts(cell) -> list[tuple[str, str]]:
    """(kind, text) of each output of a code cell: its streams and the text/plain of its
    results and displays, in order (the HTML beside them is drawn from the same facts)."""
    texts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            texts.append((out["name"], out["text"]))
        elif out["output_type"] in ("execute_result", "display_data"):
            texts.append((out["output_type"], out["data"].get("text/plain", "") + "\n"))
        else:
            texts.append((out["output_type"], f"{out.get('ename', '')}: {out.get('evalue', '')}\n"))
    return texts


def cell_texts(nb) -> list[str]:
    """What each code cell showed as text, kinds marked: what the tests compare."""
    return ["".join(f"[{kind}] {text}" for kind, text in output_texts(cell))
            for cell in nb.cells if cell.cell_type == "code"]


def notebook_path(demo: Path) -> Path:
    return NOTEBOOKS / (demo.stem + ".ipynb")


def main(argv: list[str]) -> int:
    import nbformat

    NOTEBOOKS.mkdir(parents=True, exist_ok=True)
    for demo in sorted(DEMOS.glob("*.kps")):
        if argv and not any(demo.name.startswith(a) for a in argv):
            continue
        nb = execute(build_notebook(demo))
        nbformat.write(nb, notebook_path(demo))
        print(f"wrote {notebook_path(demo).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

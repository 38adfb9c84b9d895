"""`pip install .` (not editable) installs what pyproject.toml lists: every package of
kprobe_shell must be in its `packages`, and every non-Python file a C extension needs at
build time in its package data, or the installed shell fails to import."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed_for_a_plain_install():
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "kprobe_shell").rglob("__init__.py")}
    missing = packages - set(CONFIG["packages"])
    assert not missing, f"pyproject.toml's packages lacks {sorted(missing)}"


def test_every_header_ships_with_its_package():
    for header in (ROOT / "kprobe_shell").rglob("*.h"):
        package = ".".join(header.parent.relative_to(ROOT).parts)
        assert header.name in CONFIG["package-data"].get(package, []), f"{header} is not in package-data"

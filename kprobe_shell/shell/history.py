"""The history file of the prompt (prompt_toolkit's FileHistory format), kept to history-size."""
from __future__ import annotations

import os


def trim_history_file(path: str, size: int, slack: int | None = None) -> None:
    """Keep the newest `size` entries once the file holds `slack` more than that (default
    a tenth, so a start-up does not rewrite the file every time)."""
    if slack is None:
        slack = size // 10
    try:
        if slack and os.path.getsize(path) < 32 * size:  # an entry takes >= 33 bytes: cannot be over
            return
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return
    entries: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.startswith("#") and current and any(x.startswith("+") for x in current):
            entries.append(current)
            current = []
        current.append(line)
    if current:
        entries.append(current)
    if len(entries) <= size + slack:
        return
    keep = entries[-size:] if size > 0 else []
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for entry in keep:
                f.writelines(entry)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass

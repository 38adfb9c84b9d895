"""Text that came from outside (the guest, an ELF file, a file name) made safe to show.

A terminal obeys control characters: ESC sequences set the title, clear the screen or
move the cursor, CR overwrites a line.  Text the user did not write is shown with them
escaped as \\xNN, as `x/s` shows a string's bytes.
"""
from __future__ import annotations

import re

# C0 controls but tab, DEL and C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Control characters as \\xNN (tab kept)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)

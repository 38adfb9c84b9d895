"""Wildcards over function names (`kprobe vfs_*`, `kretprobe sys_*`, `p 'do_*' ...`) and
unique event names.

A wildcard places one probe per matching function, as bpftrace and perf probe do; a
function that cannot take one is skipped, and the skips are summarised one line per
reason, so one unprobeable match never stops a script.
"""
from __future__ import annotations

import re
from typing import Callable

from ..registry import CommandError

_GLOB = re.compile(r"[*?\[]")


# ---------------------------------------------------------------------- wildcards
def is_wildcard(location: str) -> bool:
    return bool(_GLOB.search(location))


def matching_functions(session, pattern: str) -> list[str]:
    """Functions of the image whose names match PATTERN, in address order."""
    return [s.name for s in session.machine.symbols.glob(pattern) if s.type == "FUNC" and s.size]


#: Why a match could not take a probe, in a few words (the engine's message says it in full).
_REASONS = (
    ("exec path", "on the exec path (a return probe there needs --unsafe)"),
    ("dying task", "on the exit path (a return probe there needs --unsafe)"),
    ("engine's own", "the probe engine's own code"),
    ("is hlt", "starts with hlt"),
    ("already an int3", "already an int3"),
    ("Perhaps it has been optimized out", "a variable is optimized out there"),
    ("no debug info", "no debug info"),
)


def skip_reason(message: str, name: str) -> str:
    for needle, reason in _REASONS:
        if needle in message:
            return reason
    first = message.splitlines()[0] if message else "refused"
    return re.sub(rf"\b{re.escape(name)}\b", "it", first.removeprefix("parse error: "))


def place_each(session, pattern: str, place: Callable[[str], list], errors: tuple = ()) -> list:
    """PLACE(name) for every function matching PATTERN (it returns what it made); the
    refused ones (CommandError or ERRORS) are reported one line per reason."""
    names = matching_functions(session, pattern)
    if not names:
        raise CommandError(f"no function matches '{pattern}'")
    placed, skipped = [], {}
    for name in names:
        try:
            placed.extend(place(name))
        except (CommandError, *errors) as exc:
            skipped.setdefault(skip_reason(str(exc), name), []).append(name)
    placeable = len(names) - sum(map(len, skipped.values()))
    session.out.print(f"{len(placed)} probe(s) on {placeable} of the {len(names)} functions matching '{pattern}'")
    for reason, who in skipped.items():
        session.out.print(f"  skipped {len(who)}: {reason}: {', '.join(who)}", "warning")
    return placed

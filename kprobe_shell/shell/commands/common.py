"""What several commands share: numbers and probe numbers the way gdb users type them."""
from __future__ import annotations

from ..locations import parse_number  # noqa: F401 (the commands' one number parser)
from ..registry import CommandError


def no_arguments(rest: str, usage: str) -> None:
    """For commands that take no arguments: refuse extra words instead of ignoring them."""
    if rest.strip():
        raise CommandError(f"unexpected '{rest.strip()}' (usage: {usage})")


def parse_probe_numbers(session, rest: str) -> list:
    """`delete 1 3`: the user probes named, each once, all checked before anything changes."""
    targets = []
    for word in session.split_args(rest):
        up = session.probes.lookup(word)
        if up not in targets:
            targets.append(up)
    return targets

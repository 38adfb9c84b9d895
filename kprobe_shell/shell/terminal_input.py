"""The prompt's keyboard: prompt_toolkit's POSIX input, with nothing typed lost between
the end of a prompt and the command it starts.

The terminal is raw while a prompt is up and for a moment after Enter; prompt_toolkit
stops reading it before it leaves raw mode.  A key typed in that moment stays in the tty's
queue as a byte and reaches the next prompt, so a Ctrl-C meant for the command just
entered (SIGINT in cooked mode) became a Ctrl-C at the following prompt instead.  Reading
what is queued just before raw mode ends and keeping it as typeahead, as prompt_toolkit
keeps the keys it has read but not used, leaves no such moment: a key comes either before
(typeahead, where the shell sees it) or after (cooked mode, where the tty driver turns
Ctrl-C into SIGINT)."""
from __future__ import annotations

from typing import ContextManager

from prompt_toolkit.input.typeahead import store_typeahead
from prompt_toolkit.input.vt100 import Vt100Input
from prompt_toolkit.key_binding import KeyPress

# Enough for any paste the tty holds (its queue is 4 KiB; read_keys takes 1 KiB a call).
_MOST_READS = 64


class DrainingInput(Vt100Input):
    def raw_mode(self) -> ContextManager[None]:
        return _RawModeDrainedOnExit(self, super().raw_mode())


class _RawModeDrainedOnExit:
    def __init__(self, terminal: DrainingInput, raw: ContextManager[None]):
        self.terminal = terminal
        self.raw = raw

    def __enter__(self) -> None:
        return self.raw.__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            store_typeahead(self.terminal, self._queued_keys())
        finally:
            self.raw.__exit__(*exc)

    def _queued_keys(self) -> list[KeyPress]:
        keys: list[KeyPress] = []
        for _ in range(_MOST_READS):
            if self.terminal.closed:
                break
            got = self.terminal.read_keys()
            if not got:
                break
            keys.extend(got)
        keys.extend(self.terminal.flush_keys())
        return keys

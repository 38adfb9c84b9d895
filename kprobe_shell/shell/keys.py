"""Key bindings of the prompt.

Ctrl-C at the prompt abandons the line being typed (it stays on screen, greyed, and a
fresh prompt appears, as in bash and gdb); it never leaves the shell.  Ctrl-C while a
command runs is not a key binding: the terminal is in cooked mode then, SIGINT reaches
the main thread and the REPL turns it into `machine.request_stop()`.
Ctrl-D on an empty line leaves the shell; Ctrl-L clears the screen.
"""
from __future__ import annotations

from prompt_toolkit.key_binding import KeyBindings


class LineAbandoned(KeyboardInterrupt):
    """Ctrl-C at the prompt: drop the line, prompt again."""


def build_key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("c-c", eager=True)
    def _abandon_line(event) -> None:
        event.app.exit(exception=LineAbandoned(), style="class:aborting")

    @kb.add("c-l")
    def _clear(event) -> None:
        event.app.renderer.clear()

    return kb

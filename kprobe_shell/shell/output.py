"""Where the shell's words go: plain text, colour on a terminal, or JSON lines for tools."""
from __future__ import annotations

import json
import sys
from typing import TextIO

from ..textsafe import escape_controls
from ..tracing.trace import decoded_events

ANSI = {
    "error": "\x1b[1;31m", "warning": "\x1b[33m", "addr": "\x1b[36m", "sym": "\x1b[32m",
    "planted": "\x1b[1;35m", "changed": "\x1b[1;33m", "header": "\x1b[1m", "dim": "\x1b[2m",
    "console": "", "trace": "\x1b[34m", "pc": "\x1b[1;32m", "narrate": "\x1b[3;36m",
}
RESET = "\x1b[0m"


class Output:
    """Text for people, JSON objects for tools (`--json`): one per command result and per event.

    Trace events are not rendered at the probe hit: trace() keeps the event record and
    renders it later, in order with everything else (before anything else is written, at
    flush(), or when `batch` have piled up), as ftrace keeps binary records in its ring
    buffer and formats them when the trace is read.  A person at a terminal sees each line
    at once (batch 1); a file or a pipe gets them rendered and written 512 at a time.

    Records a recorder wrote in C into the trace ring (follow()) have no Python call to
    announce them: the output prints those recorded since its cursor (the ring's
    printed_seq) whenever it renders, rendered in bulk by the ring, in recording order
    among the events queued here."""

    #: How many trace events wait to be rendered when the output is not a terminal.
    TRACE_BATCH = 512
    RECORDS_PER_WRITE = 4096

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None, json_mode: bool = False,
                 palette: dict[str, str] | None = None, err_stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        #: Errors go here, as gdb's and every Unix tool's go to stderr (the same stream
        #: unless one is given; in --json mode they are objects on the stream like the rest).
        self.err_stream = err_stream or self.stream
        self.palette = {**ANSI, **(palette or {})}  # the config file's color.ROLE lines win
        if color is None:
            color = bool(getattr(self.stream, "isatty", lambda: False)())
        self.color = color and not json_mode
        self.json_mode = json_mode
        self._collected: list[str] | None = None
        self._pending: list = []  # trace events not rendered yet
        self.ring = None          # the trace ring whose C records print here (follow())
        self._ring_readable = None
        interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.batch = 1 if interactive else self.TRACE_BATCH
        #: Text from the guest (console, trace values) is escaped on a terminal only: a
        #: file or a pipe gets the bytes as they were.
        self.terminal = interactive and not json_mode

    def style(self, text: str, role: str) -> str:
        if not self.color or not self.palette.get(role):
            return text
        return f"{self.palette[role]}{text}{RESET}"

    def follow(self, buffer, readable=None) -> None:
        """Print the records written in C into `buffer` (a TraceBuffer) from now on.
        readable() says whether this thread may read the ring now (its recorders write
        without the GIL while the guest runs: only the run's own thread reads it then)."""
        self.ring = ring = buffer.ring
        self._ring_readable = readable
        ring.live = True
        ring.printed_seq = ring.seq

    def _unprinted(self) -> bool:
        ring = self.ring
        return (ring is not None and ring.last_live_seq > ring.printed_seq
                and (self._ring_readable is None or self._ring_readable()))

    def write(self, text: str) -> None:
        if self._pending or self._unprinted():
            self._render_pending()
        self.stream.write(text)

    def trace(self, ev) -> None:
        """A trace event (tracing.trace.TraceEvent) from a probe hit: rendered later."""
        pending = self._pending
        pending.append(ev)
        if len(pending) >= self.batch:
            self._render_pending()

    def _render_pending(self) -> None:
        pending, self._pending = self._pending, []
        if self._unprinted():
            self._write_with_ring(pending)
            return
        self.stream.write(self._render(pending))

    def _render(self, events) -> str:
        if self.json_mode:
            return "".join(json.dumps(ev.as_json(), sort_keys=True) + "\n" for ev in events)
        if self.color or self.terminal:
            return "".join(self.style(self.guest_text(ev.ftrace()), "trace") + "\n" for ev in events)
        return "".join(ev.ftrace() + "\n" for ev in events)

    def _write_with_ring(self, pending) -> None:
        """The queued events and the C records since the cursor, in recording order."""
        ring = self.ring
        plain = not (self.json_mode or self.color or self.terminal)
        lo = ring.printed_seq
        for ev in pending:
            if ev.seq > lo:
                self._write_records(lo, ev.seq, plain)
                lo = ev.seq
            self.stream.write(self._render((ev,)))
        self._write_records(lo, 0, plain)
        ring.printed_seq = ring.seq

    def _write_records(self, lo: int, hi: int, plain: bool) -> None:
        """The C records with lo < seq < hi (hi 0: to the newest), a span of
        RECORDS_PER_WRITE at a time: a full buffer's lines (tens of thousands) are never
        all held as text at once, so the process does not grow by them."""
        end = self.ring.last_live_seq + 1
        if hi == 0 or hi > end:
            hi = end
        while lo + 1 < hi:
            top = min(lo + 1 + self.RECORDS_PER_WRITE, hi)
            if plain:  # rendered in C
                self.stream.write(self.ring.render_live(lo, top))
            else:
                self.stream.write(self._render(decoded_events(self.ring.events(lo, top, True))))
            lo = top - 1

    def print(self, text: str = "", role: str | None = None) -> None:
        if self._collected is not None:
            self._collected.append(text)
            return
        self.write((self.style(text, role) if role else text) + "\n")

    def emit_json(self, obj: dict) -> None:
        self.write(json.dumps(obj, sort_keys=True) + "\n")

    def guest_text(self, text: str) -> str:
        """Text the guest controls, made safe to show here (escaped on a terminal)."""
        return escape_controls(text) if self.terminal else text

    def event(self, obj: dict, text: str, role: str | None = None) -> None:
        """Something that happened while the guest ran (trace line, console line, warning)."""
        if self.json_mode:
            self.emit_json(obj)
        else:
            self.write((self.style(text, role) if role else text) + "\n")

    def error(self, text: str) -> None:
        if self.json_mode:
            self.emit_json({"type": "error", "message": text})
        elif self.err_stream is self.stream:
            self.write(self.style(text, "error") + "\n")
        else:
            self.flush()  # what came before the error is printed before it
            self.err_stream.write(self.style(text, "error") + "\n")
            self.err_stream.flush()

    def flush(self) -> None:
        try:
            if self._pending or self._unprinted():
                self._render_pending()
            self.stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not kill the shell
            pass

    # Command results in JSON mode collect the text the command printed.
    def begin_command(self) -> list[str] | None:
        """Start collecting a command's text; returns what an enclosing command had
        collected (a probe's commands run inside `run`), for end_command to give back."""
        outer = self._collected
        if self.json_mode:
            self._collected = []
        return outer

    def end_command(self, line: str, ok: bool, data: object = None, error: str | None = None,
                    outer: list[str] | None = None) -> None:
        if not self.json_mode:
            return
        text, self._collected = self._collected or [], outer
        obj = {"type": "result", "command": line, "ok": ok, "output": "\n".join(text)}
        if data is not None:
            obj["data"] = data
        if error is not None:
            obj["error"] = error
        self.emit_json(obj)

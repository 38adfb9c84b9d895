"""The bottom toolbar: where the guest is, which task runs, the virtual clock, the probes.

The UI thread draws the toolbar, but the guest's registers and memory belong to the
thread that runs it.  So the values are read once when a command has finished (the guest
is stopped then) and cached; while the guest runs the toolbar only says so.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Snapshot:
    state: str = "stopped"
    detail: str = ""
    where: str = ""
    task: str = ""
    time_ns: int = 0
    probes: int = 0
    hits: int = 0
    missed: int = 0


def guest_state(session) -> tuple[str, str]:
    """(state word, detail): running / stopped / halted / faulted, and why."""
    from ..machine import StopReason

    m = session.machine
    if m.running:
        return "running", ""
    if m.halted:
        return "halted", ""
    ev = session.stop_event
    if ev is None:
        return "stopped", "not started" if m.time_ns == 0 else ""
    if ev.reason in (StopReason.FAULT, StopReason.BUG):
        return "faulted", ev.reason.value if ev.reason is StopReason.BUG else ""
    if ev.reason is StopReason.HALTED:
        return "halted", ""
    detail = {
        StopReason.INTERRUPTED: "interrupted",
        StopReason.BREAKPOINT: "breakpoint",
        StopReason.HANDLER: "handler error",
        StopReason.BUDGET: "",
    }.get(ev.reason, ev.reason.value)
    return "stopped", detail


def take_snapshot(session) -> Snapshot:
    """Read everything the toolbar shows. Call only while the guest is stopped."""
    snap = Snapshot()
    m = session.machine
    snap.state, snap.detail = guest_state(session)
    snap.time_ns = m.time_ns
    probes = list(session.probes.values())
    snap.probes = len(probes)
    snap.hits = sum(getattr(up.obj, "hits", up.hits) for up in probes)
    snap.missed = sum(getattr(up.obj, "nmissed", 0) for up in probes)
    try:
        snap.where = m.symbols.format(m.rip, with_size=False)
    except Exception:  # noqa: BLE001 - the toolbar shows what it can
        snap.where = "?"
    try:
        task = m.tasks.current()
        snap.task = task.label if task else "-"
    except Exception:  # noqa: BLE001
        snap.task = "?"
    return snap


def format_seconds(ns: int) -> str:
    """Virtual time as seconds with nanosecond digits (exact: no float rounding)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


class Toolbar:
    """Callable for PromptSession(bottom_toolbar=...): formatted text from the cached snapshot."""

    def __init__(self, session):
        self.session = session
        self.snapshot = Snapshot()

    def refresh(self) -> None:
        """Re-read the machine (the REPL calls this after every command, guest stopped)."""
        s = self.session
        if s.machine.running:
            return
        if s.background_running and threading.current_thread() is not s.background:
            return  # a background run owns the machine; it refreshes us when it ends
        try:
            self.snapshot = take_snapshot(self.session)
        except Exception:  # noqa: BLE001 - never let the toolbar break the prompt
            pass

    def __call__(self):
        snap = self.snapshot
        s = self.session
        running = s.machine.running or s.background_running
        state = "running" if running else snap.state
        if state == "running":
            how = "'interrupt' or Ctrl-C stops it" if s.background_running else "Ctrl-C stops the guest"
            return [("class:toolbar.running", " running "), ("class:toolbar", f"  ({how})")]
        style = {"stopped": "class:toolbar.stopped", "halted": "class:toolbar.halted",
                 "faulted": "class:toolbar.faulted"}.get(state, "class:toolbar")
        label = f" {state}{f' ({snap.detail})' if snap.detail else ''} "
        parts = [(style, label), ("class:toolbar", "  ")]
        if state != "halted":
            parts += [("class:toolbar", "rip "), ("class:toolbar.sym", snap.where), ("class:toolbar", "  ")]
        parts += [
            ("class:toolbar", f"task {snap.task}  "),
            ("class:toolbar", f"t={format_seconds(snap.time_ns)}s  "),
            ("class:toolbar", f"{snap.probes} probe{'s' if snap.probes != 1 else ''}, {snap.hits} hit{'s' if snap.hits != 1 else ''}"),
        ]
        if snap.missed:
            parts.append(("class:toolbar.missed", f", {snap.missed} missed"))
        return parts


def toolbar_text(session) -> str:
    """The toolbar as plain text (for tests and for terminals without a toolbar)."""
    tb = Toolbar(session)
    tb.refresh()
    return "".join(text for _style, text in tb())

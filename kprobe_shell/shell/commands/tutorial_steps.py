"""What the guided tour is made of: lessons of steps, what a step asks, and the checks that
tell, on the machine, whether the student's command did it (tutorial_lessons.py has the
lessons themselves).

A step names the commands that belong to it and checks the machine, not the spelling:
`kprobe do_fork` and `kp do_fork+0` both pass, and `kprobe do_exit` is answered with what
it did instead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from ...images import bundled_image_path
from ..locations import eval_address
from ..settings import DEFAULT_SETTINGS, setting


@dataclass
class Attempt:
    """What the student's command did, for a step's check."""

    session: object
    line: str
    rest: str
    data: object
    new_probes: list  # the UserProbes the command created
    error: str | None = None  # the shell refused the command (only seen by steps that expect it)


@dataclass
class Step:
    intro: str
    task: str
    commands: tuple[str, ...]          # the command names this step is about
    hint: Callable[[object], str]      # the command to type, for `hint`
    check: Callable[[Attempt], str | None]  # None: done; else what went wrong
    explain: str | Callable[[object], str]  # what was seen, in kernel terms (from the machine when callable)
    expects_refusal: bool = False      # the shell's refusal is the lesson: the check reads it
    after: Callable[[object], str] | None = None  # the tour's own part once the step is done; says what it did


@dataclass
class Lesson:
    number: int                        # as in scripts/demos
    title: str
    steps: list[Step] = field(default_factory=list)
    fresh: bool = True                 # the tour boots a fresh machine for it (else it goes on from the last lesson)

    @property
    def heading(self) -> str:
        return f"Lesson {self.number}: {self.title}"


#: What the tour sets for every lesson that starts afresh: the 2005 mechanism (every
#: probe an int3), out-of-line steps, one CPU, no narration, and the default timer and
#: workload whatever a config file says (the lessons' numbers are those of that machine).
TOUR_SETTINGS = {"kprobe-mode": "boost", "kprobe-step": "out-of-line", "cpus": 1, "explain": False,
                 "timer-period": DEFAULT_SETTINGS["timer-period"], "keep-workload": False,
                 "ram-mib": DEFAULT_SETTINGS["ram-mib"]}


def set_quietly(session, name: str, value) -> None:
    """A setting the tour puts back, without `set`'s remarks (a parsed value)."""
    row = setting(name)
    if row.on_machine is not None:
        row.on_machine(session, session.machine, value)
    session.settings[name] = value


def fresh_machine(session) -> None:
    """The bundled kernel booted afresh: no probes, no programs, an empty trace, the tour's settings."""
    session.programs.clear()
    session.settings.update(TOUR_SETTINGS)  # a new machine takes them (settings.configure_machine)
    session.replace_machine(session.bundled_image(), keep_probes=False)
    session.image_explicit = False
    session.trace.clear()


def example_path(name: str) -> str:
    """A bundled example program, as a student would type it from here."""
    path = bundled_image_path(f"examples/{name}")
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


# ---------------------------------------------------------------------- shared checks
def probe_at(session, kind: str, location: str):
    addr = eval_address(session, location)
    for up in sorted(session.probes.values(), key=lambda p: p.number):
        if up.kind == kind and up.addr == addr:
            return up
    return None


def number_of(session, kind: str, location: str) -> str:
    up = probe_at(session, kind, location)
    return str(up.number) if up else "N"


KIND_NAMES = {"k": "a kprobe", "r": "a kretprobe", "j": "a jprobe", "b": "a breakpoint", "t": "a breakpoint"}


def placed(kind: str, location: str, what: str) -> Callable[[Attempt], str | None]:
    def check(a: Attempt) -> str | None:
        if probe_at(a.session, kind, location) is not None:
            return None
        if a.new_probes:
            up = a.new_probes[0]
            where = a.session.machine.symbols.format(up.addr, with_size=False)
            return (f"that placed {KIND_NAMES.get(up.kind, 'a probe')} at {where}, but this step asks for {what} "
                    f"at {location}.")
        return f"no {what} at {location} yet."
    return check


def any_answer(_a: Attempt) -> None:
    return None


def halted(a: Attempt) -> str | None:
    stop = a.session.stop_event
    return None if stop is not None and stop.is_final else "the guest has not finished yet: continue again."


def stopped_at(location: str, where_in_words: str) -> Callable[[Attempt], str | None]:
    def check(a: Attempt) -> str | None:
        stop = a.session.stop_event
        if stop is not None and stop.rip == eval_address(a.session, location):
            return None
        here = a.session.machine.symbols.format(a.session.machine.rip, with_size=False)
        return f"the guest stopped at {here}, not at the breakpoint {where_in_words}."
    return check


def showed_slot_of(kind: str, location: str) -> Callable[[Attempt], str | None]:
    def check(a: Attempt) -> str | None:
        up = probe_at(a.session, kind, location)
        shown = [d.get("probe") for d in a.data or []]
        if up is not None and up.number in shown:
            return None
        return f"that showed the slot of probe {', '.join(map(str, shown)) or 'none'}, not of the {location} probe."
    return check


def setting_is(name: str, value) -> Callable[[Attempt], str | None]:
    def check(a: Attempt) -> str | None:
        now = a.session.settings[name]
        if now == value:
            return None
        return f"{name} is {now}; this step wants {value}."
    return check

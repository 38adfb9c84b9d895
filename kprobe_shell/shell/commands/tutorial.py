"""`tutorial`: a guided tour for a student alone at a terminal.

Each step says what to do and why, waits for the student to type the command, runs it,
and checks on the machine that it did what the step asks (commands/tutorial_lessons.py).  A
wrong answer is explained and undone; a command from another step is not run, so the
machine stays where the lesson needs it.  `hint` shows the command, `skip` runs it,
`quit` leaves the tour (the shell goes on).
"""
from __future__ import annotations

import re
import select
import sys
import textwrap

from ..registry import REGISTRY, CommandError, command
from ..settings import apply_setting
from .tutorial_lessons import STEPS, Attempt

#: Commands that only look: allowed at any step, they change nothing the lesson needs.
LOOKING = frozenset({"help", "x", "disas", "regs", "bt", "stack", "probes", "instances", "slot", "symbols",
                     "tasks", "cpus", "print", "show", "explain", "echo", "trace", "maps", "profile"})
WIDTH = 78


class _Leave(Exception):
    """The student left the tour (quit, Ctrl-D, Ctrl-C)."""


def _needs_terminal(session) -> bool:
    if getattr(session, "batch", False) or session.out.json_mode:
        return True
    try:
        return sys.stdin is None or not sys.stdin.isatty()
    except (AttributeError, ValueError):
        return True


def _say(session, text: str, role: str | None = None, indent: str = "") -> None:
    for line in textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent) or [""]:
        session.out.print(line, role)


def _read(session, prompt: str) -> str:
    """One line typed by the student.  Polls, so that Ctrl-C at the shell's prompt (which
    asks the machine to stop) ends the tour instead of waiting forever."""
    session.out.write(session.out.style(prompt, "header"))
    session.out.flush()
    machine = session.machine
    while True:
        try:
            ready, _, _ = select.select([sys.stdin], [], [], 0.2)
        except KeyboardInterrupt:  # Ctrl-C where the tour runs on the main thread (-ex tutorial)
            raise _Leave("interrupted") from None
        if ready:
            line = sys.stdin.readline()
            if not line:
                raise _Leave("end of input")
            return line.strip()
        if machine.stop_requested:
            machine.stop_requested = False
            raise _Leave("interrupted")


def _parse(line: str) -> tuple[str, str]:
    """(command name, its arguments) read as Session.execute reads the line: gdb's x/FMT
    glued to its command, `r [N]`, ftrace's p/r lines and bpftrace's @map lines."""
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    if "/" in word and word.split("/")[0] in ("x", "print", "output"):
        name, fmt = word.split("/", 1)
        return REGISTRY.lookup(name).name, f"/{fmt} {rest}".strip()
    if word == "r" and (not rest.rstrip("& ").strip() or rest.rstrip("& ").strip().isdigit()):
        return "run", rest
    if re.fullmatch(r"(p|r\d*)(:\S*)?|-:\S*", word) and not (word == "p" and rest.startswith("$")):
        return "probe-event", line
    if word == "p":
        return "print", rest
    if word.startswith("@"):
        return "aggregate", line
    cmd, rest = REGISTRY.lookup_line(line)
    return cmd.name, rest


def _run_attempt(session, line: str, rest: str) -> Attempt | None:
    """Run the student's command; None when it was refused (the error is said)."""
    before = set(session.probes)
    try:
        data = session.execute(line)
    except CommandError as exc:
        session.out.print(f"error: {exc}", "error")
        return None
    new = [session.probes[n] for n in sorted(set(session.probes) - before)]
    return Attempt(session, line, rest, data, new)


def _undo(session, attempt: Attempt) -> None:
    for up in attempt.new_probes:
        session.execute(f"delete {up.number}")


def _step(session, index: int) -> None:
    step = STEPS[index]
    out = session.out
    out.print("")
    out.print(f"{step.lesson} (step {index + 1} of {len(STEPS)})", "header")
    _say(session, step.intro)
    _say(session, f"Your turn: {step.task}", "sym")
    while True:
        line = _read(session, f"tutorial {index + 1}/{len(STEPS)}> ")
        word = line.split()[0] if line else ""
        if not word or word.startswith("#"):
            continue
        if word in ("quit", "exit", "q"):
            raise _Leave("left")
        if word == "hint":
            _say(session, f"Type: {step.hint(session)}", "sym", "  ")
            continue
        if word == "skip":
            line = step.hint(session)
            out.print(f"  (running it for you: {line})", "dim")
        if _attempt(session, step, line):
            _say(session, step.explain, "narrate", "  ")
            return


def _attempt(session, step, line: str) -> bool:
    """True when the line did what the step asks; otherwise say why and undo it."""
    try:
        name, rest = _parse(line)
    except CommandError as exc:
        session.out.print(f"error: {exc}", "error")
        return False
    if name not in step.commands and name not in LOOKING:
        _say(session, f"'{name}' is not part of this step: it would change the machine this lesson is built "
                      f"on, so it did not run. {step.task} ('hint' shows the command.)", "warning", "  ")
        return False
    attempt = _run_attempt(session, line, rest)
    if attempt is None:
        _say(session, f"That was refused, and nothing changed. {step.task}", "warning", "  ")
        return False
    if name not in step.commands:
        _say(session, f"Looking around is fine. This step still asks: {step.task}", "dim", "  ")
        return False
    why = step.check(attempt)
    if why is None:
        session.out.print("  Yes.", "sym")
        return True
    _say(session, f"Not quite: {why}", "warning", "  ")
    if step.undo_probes and attempt.new_probes:
        numbers = ", ".join(str(up.number) for up in attempt.new_probes)
        _undo(session, attempt)
        _say(session, f"(Removed what it placed, number {numbers}, so the lesson can go on.)", "dim", "  ")
    _say(session, f"Try again: {step.task} ('hint' shows the command.)", "dim", "  ")
    return False


@command("tutorial", group="shell", repeatable=False,
         summary="a guided tour of kprobes for a student alone: type each step's command, see it explained",
         usage="tutorial")
def cmd_tutorial(session, rest: str):
    """Walks through the lessons of scripts/demos step by step on a fresh machine with the
bundled kernel: each step says what to do, waits for you to type the command, checks
on the machine that it did what was asked (a wrong answer is explained and undone), and
explains what you see.  At the tutorial's prompt: `hint` shows the command, `skip` runs
it for you, `quit` leaves the tour.  It needs a person at a terminal."""
    if rest.strip():
        raise CommandError("usage: tutorial")
    if _needs_terminal(session):
        raise CommandError("the tutorial waits for you to type each command: start it at a terminal "
                           "(not with --batch, --json or piped input)")
    dropped = len(session.probes)
    session.replace_machine(session.bundled_image(), keep_probes=False)
    session.image_explicit = False
    session.trace.clear()
    apply_setting(session, "kprobe-mode", "boost")
    out = session.out
    out.print("kprobes, a guided tour: type each step's command; 'hint' shows it, 'skip' runs it, "
              "'quit' leaves.", "header")
    out.print("(kprobe-mode is set to boost, as in Linux 2.6.12: every probe is an int3; "
              "'set kprobe-mode auto' after the tour goes back to the default.)", "dim")
    if dropped:
        out.print(f"(A fresh machine with the bundled kernel; your {dropped} probe(s) were dropped.)", "dim")
    done = 0
    try:
        for index in range(len(STEPS)):
            _step(session, index)
            done = index + 1
    except _Leave as why:
        out.print("")
        out.print(f"Left the tutorial after {done} of {len(STEPS)} steps ({why}); 'tutorial' starts it again.",
                  "header")
        return {"steps": done, "finished": False}
    out.print("")
    out.print(f"Tutorial finished: {len(STEPS)} of {len(STEPS)} steps. The shell is yours.", "header")
    return {"steps": done, "finished": True}

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
from .tutorial_lessons import LESSONS, STEPS
from .tutorial_steps import Attempt, fresh_machine, set_quietly

#: Settings that apply at the next boot (reset, load, exec): the tour's own values
#: during the tour, the user's again after it.
NEXT_BOOT_SETTINGS = ("cpus", "timer-period", "keep-workload", "ram-mib")
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


def _run_attempt(session, step, line: str, rest: str) -> Attempt | None:
    """Run the student's command; None when it was refused (the error is said), unless the
    refusal is what the step is about."""
    before = set(session.probes)
    try:
        data = session.execute(line)
    except CommandError as exc:
        session.out.print(f"error: {exc}", "error")
        if not step.expects_refusal:
            return None
        return Attempt(session, line, rest, None, [], error=str(exc))
    new = [session.probes[n] for n in sorted(set(session.probes) - before)]
    return Attempt(session, line, rest, data, new)


def _undo(session, attempt: Attempt, settings_before: dict, programs_before: int) -> list[str]:
    """Take back what a wrong answer changed (its probes, its settings, the programs it
    queued); what was undone."""
    undone = []
    if len(session.programs) > programs_before:
        del session.programs[programs_before:]
        session.replace_machine(session.bundled_image())
        undone.append("took the program off the guest's disk")
    if attempt.new_probes:
        for up in attempt.new_probes:
            session.execute(f"delete {up.number}")
        undone.append(f"removed what it placed, number {', '.join(str(up.number) for up in attempt.new_probes)}")
    changed = [name for name, value in settings_before.items() if session.settings.get(name) != value]
    for name in changed:
        set_quietly(session, name, settings_before[name])
    if changed:
        undone.append(f"put {', '.join(changed)} back")
    return undone


def _begin_lesson(session, lesson, first: bool) -> None:
    """A lesson's heading; its fresh machine, or the tour's first one."""
    out = session.out
    out.print("")
    out.print(f"=== {lesson.heading} ===", "header")
    if first or lesson.fresh:
        fresh_machine(session)
    if lesson.fresh:
        out.print("(A fresh machine for this lesson: the bundled kernel, no probes, one CPU, kprobe-mode boost.)",
                  "dim")


def _step(session, index: int) -> None:
    _lesson, step = STEPS[index]
    _show_step(session, index)
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
            session.out.print(f"  (running it for you: {line})", "dim")
        if _attempt(session, step, line):
            _done(session, step)
            return


def _show_step(session, index: int) -> None:
    lesson, step = STEPS[index]
    session.out.print("")
    session.out.print(f"{lesson.heading} (step {index + 1} of {len(STEPS)})", "header")
    _say(session, step.intro)
    _say(session, f"Your turn: {step.task}", "sym")


def _done(session, step) -> None:
    if step.after is not None:
        _say(session, step.after(session), "dim", "  ")
    explain = step.explain(session) if callable(step.explain) else step.explain
    _say(session, explain, "narrate", "  ")


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
    settings_before, programs_before = dict(session.settings), len(session.programs)
    attempt = _run_attempt(session, step, line, rest)
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
    undone = _undo(session, attempt, settings_before, programs_before)
    if undone:
        said = "; ".join(undone)
        _say(session, f"({said[0].upper()}{said[1:]}, so the lesson can go on.)", "dim", "  ")
    _say(session, f"Try again: {step.task} ('hint' shows the command.)", "dim", "  ")
    return False


def _auto(session, first: int) -> dict:
    """The whole tour typed by the tour itself: each step's command, checked as a student's
    would be (a step it does not pass is an error: the lesson no longer fits the machine)."""
    for index in range(first, len(STEPS)):
        lesson, step = STEPS[index]
        if index == first or STEPS[index - 1][0] is not lesson:
            _begin_lesson(session, lesson, index == first)
        _show_step(session, index)
        line = step.hint(session)
        session.out.print(f"tutorial {index + 1}/{len(STEPS)}> {line}", "header")
        if not _attempt(session, step, line):
            raise CommandError(f"tutorial step {index + 1} ({lesson.heading}): '{line}' did not do what the "
                               "step asks (see above)")
        _done(session, step)
    session.out.print("")
    session.out.print(f"Tutorial finished: {len(STEPS) - first} step(s) typed by the tour.", "header")
    return {"steps": len(STEPS) - first, "finished": True}


def _parse_args(rest: str) -> tuple[bool, int]:
    """(--auto, the index of the first step) from `tutorial [LESSON] [--auto]`."""
    words = rest.split()
    auto = "--auto" in words
    others = [w for w in words if w != "--auto"]
    numbers = [lesson.number for lesson in LESSONS]
    if len(others) > 1 or (others and not (others[0].isascii() and others[0].isdigit()
                                           and int(others[0]) in numbers)):
        raise CommandError(f"usage: tutorial [LESSON] [--auto]  (LESSON: {numbers[0]}-{numbers[-1]}, "
                           "as in scripts/demos)")
    number = int(others[0]) if others else numbers[0]
    first = next(i for i, (lesson, _step) in enumerate(STEPS) if lesson.number == number)
    return auto, first


@command("tutorial", group="shell", repeatable=False,
         summary="a guided tour of kprobes for a student alone: type each step's command, see it explained",
         usage="tutorial [LESSON] [--auto]")
def cmd_tutorial(session, rest: str):
    """Walks through the lessons of scripts/demos (1 to 9) step by step on a fresh machine
with the bundled kernel: each step says what to do, waits for you to type the command,
checks on the machine that it did what was asked (a wrong answer is explained and undone),
and explains what you see.  LESSON starts at that lesson.  At the tutorial's prompt: `hint`
shows the command, `skip` runs it for you, `quit` leaves the tour.  It needs a person at a
terminal; --auto types every command itself (a preview for a teacher, or a check that
every step still fits the machine, in --batch too)."""
    auto, first = _parse_args(rest)
    if not auto and _needs_terminal(session):
        raise CommandError("the tutorial waits for you to type each command: start it at a terminal "
                           "(not with --batch, --json or piped input), or see it whole with tutorial --auto")
    dropped = len(session.probes)
    out = session.out
    if dropped:
        out.print(f"(A fresh machine with the bundled kernel; your {dropped} probe(s) were dropped.)", "dim")
    # The settings that only shape the next boot go back to the user's after the tour
    # (its lessons boot with the defaults); kprobe-mode stays boost, as the tour says.
    saved = {name: session.settings[name] for name in NEXT_BOOT_SETTINGS}
    try:
        return _auto(session, first) if auto else _guided(session, first)
    finally:
        session.settings.update(saved)


def _guided(session, first: int) -> dict:
    out = session.out
    out.print("kprobes, a guided tour: type each step's command; 'hint' shows it, 'skip' runs it, "
              "'quit' leaves.", "header")
    out.print("(kprobe-mode is set to boost, as in Linux 2.6.12: every probe is an int3; "
              "'set kprobe-mode auto' after the tour goes back to the default.)", "dim")
    done = first
    try:
        for index in range(first, len(STEPS)):
            lesson = STEPS[index][0]
            if index == first or STEPS[index - 1][0] is not lesson:
                _begin_lesson(session, lesson, index == first)
            _step(session, index)
            done = index + 1
    except _Leave as why:
        out.print("")
        out.print(f"Left the tutorial after {done - first} of {len(STEPS) - first} steps ({why}); "
                  "'tutorial' starts it again.", "header")
        return {"steps": done - first, "finished": False}
    out.print("")
    out.print(f"Tutorial finished: {len(STEPS) - first} of {len(STEPS) - first} steps. The shell is yours.", "header")
    return {"steps": done - first, "finished": True}

"""Teaching: explain (narration), pause (demo pacing), stack, slot; see views.py for the pictures."""
from __future__ import annotations

import select
import sys

from .. import views
from ..registry import CommandError, command
from ..settings import apply_setting
from .common import parse_number


@command("explain", group="shell", args=("text",), repeatable=False,
         summary="narrate each step of the probe mechanism as it happens (set explain)",
         usage="explain [on|off]", example="explain on\nkprobe do_fork\nrun\nexplain off")
def cmd_explain(session, rest: str):
    """With on, every step of the mechanism is told as it happens, with the real addresses
and bytes: the int3 planted and hit, the pre_handler, the copy in its insn slot and the
RIP-relative fix, the single-step and the debug trap with the fix-up resume_execution
applies (or the boost jump), a jprobe's saved registers and stack bytes, a kretprobe's
swapped return address and the trampoline's walk of kretprobe_inst_table, the flush at task
exit.  Lines start with [explain].  Same as `set explain on|off`; without an argument,
shows whether it is on."""
    word = rest.strip()
    if not word:
        state = "on" if session.settings.get("explain") else "off"
        session.out.print(f"explain is {state}")
        return {"explain": state == "on"}
    if word not in ("on", "off"):
        raise CommandError("usage: explain [on|off]")
    apply_setting(session, "explain", word)
    session.out.print(f"explain {word}: " + ("each step of the mechanism is narrated as it happens"
                                              if word == "on" else "no narration"))
    return {"explain": word == "on"}


def _pausing(session) -> bool:
    """Pause only for a person: never in batch mode, JSON mode or when stdin is not a terminal."""
    if getattr(session, "batch", False) or session.out.json_mode:
        return False
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _wait_for_enter(session) -> None:
    """Read one line from the terminal.  Poll instead of blocking, so that Ctrl-C (which the
    prompt turns into a machine stop request, see repl.py) ends the wait: the demo stops
    there instead of waiting for an Enter that will never come."""
    machine = session.machine
    machine.stop_requested = False  # a request left over from an earlier Ctrl-C is not for us
    while True:
        try:
            ready, _, _ = select.select([sys.stdin], [], [], 0.2)
        except (OSError, ValueError, TypeError):  # no real file descriptor: just read
            sys.stdin.readline()
            return
        if ready:
            sys.stdin.readline()
            return
        if machine.stop_requested:
            machine.stop_requested = False
            raise CommandError("interrupted at a pause: the rest of the script is skipped")


@command("pause", group="shell", args=("text",), repeatable=False,
         summary="in a demo: wait for Enter on a terminal (does nothing in batch mode)",
         usage="pause [TEXT]", example="pause next: the return probe")
def cmd_pause(session, rest: str):
    """Print TEXT (if any) and, when a person is at a terminal, wait for Enter before the
next command; Ctrl-C there stops the script.  In --batch mode, with --json, or when stdin
is not a terminal it only prints TEXT, so demos run unchanged in batch mode and tests."""
    text = rest.strip()
    if _pausing(session):
        session.out.write(session.out.style(f"{text + ' ' if text else ''}[Enter to go on] ", "header"))
        session.out.flush()
        _wait_for_enter(session)
    elif text:
        session.out.print(text, "header")
    return None


@command("stack", group="inspect", args=("number",), summary="the stack around rsp, each 8-byte slot explained",
         usage="stack [N] [--svg FILE]", example="stack\nstack 32\nstack 8 --svg stack.svg")
def cmd_stack(session, rest: str):
    """N 8-byte slots (default 16) from rsp towards the stack top, each labelled: return
addresses (sym+off), saved frame pointers (the rbp chain), and the slots a kretprobe
overwrote with kretprobe_trampoline, with the instance that owns each (probe, task, the
real return address).  rsp and rbp are marked.  --svg FILE draws it as a figure instead."""
    from ... import figures

    rest, svg = figures.take_svg_option(session, rest, "stack [N] [--svg FILE]")
    args = session.split_args(rest)
    if len(args) > 1:
        raise CommandError("usage: stack [N] [--svg FILE]")
    count = parse_number(args[0], "slot count") if args else 16
    if not 1 <= count <= views.MAX_STACK_SLOTS:
        raise CommandError(f"the slot count must be between 1 and {views.MAX_STACK_SLOTS}")
    if svg is not None:
        figures.save_svg(session, figures.stack_svg(session, count), svg, "the stack")
        return {"svg": svg}
    lines, data = views.render_stack(session, count)
    for line in lines:
        session.out.print(line)
    return data


@command("slot", group="probes", aliases=("slots",), args=("probe",),
         summary="a probe's original instruction beside its out-of-line copy in the insn slot",
         usage="slot [N] [--svg FILE]", example="kprobe kprobe_target\nslot 1\nslot 1 --svg slot.svg")
def cmd_slot(session, rest: str):
    """Side by side: the original instruction (address, bytes, disassembly), what memory
holds now (the planted int3), the copy in the probe's insn slot and the jmp back that a
boosted probe takes.  A RIP-relative displacement is shown [bracketed] in both, with the
arithmetic that re-targets it: new = (addr + old) - slot.  Without N: every probe.
--svg FILE draws one probe's slot as a figure, with where execution goes next."""
    from ... import figures

    rest, svg = figures.take_svg_option(session, rest, "slot [N] [--svg FILE]")
    args = session.split_args(rest)
    if len(args) > 1:
        raise CommandError("usage: slot [N] [--svg FILE]")
    if svg is not None:
        return _slot_figure(session, args, svg)
    if args:
        targets = [session.probes.lookup(args[0])]
    else:
        targets = [up for up in session.probes.sorted() if not up.is_breakpoint]
        if not targets:
            raise CommandError("no probes: plant one first (kprobe LOCATION)")
    rendered = [views.render_slot(session, up) for up in targets]  # all checked before any output
    data = []
    for i, (lines, info) in enumerate(rendered):
        if i:
            session.out.print("")
        for line in lines:
            session.out.print(line)
        data.append(info)
    return data


def _slot_figure(session, args: list[str], svg: str):
    from ... import figures

    probes = [up for up in session.probes.values() if not up.is_breakpoint]
    if not args and len(probes) != 1:
        raise CommandError("--svg draws one probe's slot: slot N --svg FILE")
    up = session.probes.lookup(args[0]) if args else probes[0]
    figures.save_svg(session, figures.slot_svg(session, up), svg, f"the slot of probe {up.number}")
    return {"svg": svg, "probe": up.number}


@command("smoke-test", group="probes", args=("number",), repeatable=False,
         summary="the kernel's kprobes smoke test (test_kprobes.c) on fresh machines",
         usage="smoke-test [RAND1]", example="smoke-test\nsmoke-test 0x12345678")
def cmd_smoke_test(session, rest: str):
    """Reproduce kernel/test_kprobes.c: for each scenario (test_kprobe with pre and post
handlers, test_kprobes with one kprobe on each of kprobe_target and kprobe_target2,
test_jprobe with the guest's jkprobe_target, test_kretprobe and test_kretprobes checking
the return value rand1/3 and rand1/3+1) a fresh machine boots with smoke_rand1 = RAND1,
the probes are registered, init runs until smoke_test() is over, the probes are
unregistered and what the handlers saw is checked.  RAND1 defaults to the image's own
smoke_rand1 (the kernel draws a random one; a fixed one gives the same output every run).
The session's machine and probes are not touched.  `explain on` narrates every step."""
    from ...smoke import SmokeTestError, run_smoke_test, summary

    args = session.split_args(rest)
    if len(args) > 1:
        raise CommandError("usage: smoke-test [RAND1]")
    rand1 = parse_number(args[0], "rand1") if args else None
    narrator = session._narrate if session.settings.get("explain") else None
    try:
        rand1, results = run_smoke_test(session.image_path, rand1, narrator=narrator,
                                        timer_period=int(session.settings["timer-period"]))
    except SmokeTestError as exc:
        raise CommandError(str(exc)) from None
    out = session.out
    out.print(f"Kprobe smoke test started (rand1 = 0x{rand1:x}, div_factor = 3)", "header")
    for r in results:
        verdict = "ok" if r.ok and not r.handler_errors else "FAILED"
        out.print(f"  {r.name:<16} {verdict:<7} {r.details}")
        for err in r.handler_errors:
            out.print(f"    handler error: {err}", "error")
    line = summary(results)
    out.print(line, "header" if line.startswith("Kprobe") else "error")
    return {"rand1": rand1, "passed": line.startswith("Kprobe smoke test passed"),
            "scenarios": [{"name": r.name, "ok": r.ok, "details": r.details, "handler_errors": r.handler_errors}
                          for r in results]}


@command("try", group="shell", args=("command",), repeatable=False,
         summary="run a command; if it fails, print why and go on (for demos that show a refusal)",
         usage="try COMMAND", example="try kretprobe do_execve")
def cmd_try(session, rest: str):
    """Run COMMAND.  When it is refused, its one-line error is printed as `error: ...` and
the script goes on instead of stopping there: a demo can show what is not allowed, and
why, in batch mode too."""
    if not rest.strip():
        raise CommandError("usage: try COMMAND")
    if rest.split()[0] == "try":
        raise CommandError("try takes one command, not another try")
    try:
        return session.execute(rest)
    except CommandError as exc:
        session.out.print(f"error: {exc}", "error")
        return {"error": str(exc)}

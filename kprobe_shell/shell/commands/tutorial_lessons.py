"""The guided tour's lessons: what each step asks, how to tell it was done, what it shows.

A step names the commands that belong to it and checks the machine, not the spelling:
`kprobe do_fork` and `kp do_fork+0` both pass the first step, and `kprobe do_exit` is
answered with what it did instead.  The words follow scripts/demos (lessons 1, 2, 4 and 5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..locations import eval_address
from ..registry import CommandError


@dataclass
class Attempt:
    """What the student's command did, for a step's check."""

    session: object
    line: str
    rest: str
    data: object
    new_probes: list  # the UserProbes the command created


@dataclass
class Step:
    lesson: str
    intro: str
    task: str
    commands: tuple[str, ...]          # the command names this step is about
    hint: Callable[[object], str]      # the command to type, for `hint`
    check: Callable[[Attempt], str | None]  # None: done; else what went wrong
    explain: str
    undo_probes: bool = False          # remove what a wrong answer created


def _addr(session, name: str) -> int:
    return session.machine.symbols[name].address


def _probe_at(session, kind: str, location: str):
    addr = eval_address(session, location)
    for up in sorted(session.probes.values(), key=lambda p: p.number):
        if up.kind == kind and up.addr == addr:
            return up
    return None


def _placed(kind: str, location: str, what: str) -> Callable[[Attempt], str | None]:
    def check(a: Attempt) -> str | None:
        if _probe_at(a.session, kind, location) is not None:
            return None
        if a.new_probes:
            up = a.new_probes[0]
            where = a.session.machine.symbols.format(up.addr, with_size=False)
            names = {"k": "a kprobe", "r": "a kretprobe", "j": "a jprobe", "b": "a breakpoint", "t": "a breakpoint"}
            return (f"that placed {names.get(up.kind, 'a probe')} at {where}, but this step asks for {what} "
                    f"at {location}.")
        return f"no {what} at {location} yet."
    return check


def _number_of(session, kind: str, location: str) -> str:
    up = _probe_at(session, kind, location)
    return str(up.number) if up else "N"


def _examined_do_fork(a: Attempt) -> str | None:
    where = a.rest.split(None, 1)[1] if a.rest.startswith("/") and " " in a.rest else a.rest
    try:
        addr = eval_address(a.session, where)
    except CommandError:
        return "that did not name an address."
    if addr == _addr(a.session, "do_fork"):
        return None
    return (f"that showed memory at {a.session.machine.symbols.format(addr, with_size=False)}; "
            "this step looks at the first bytes of do_fork.")


def _ran_probe(a: Attempt) -> str | None:
    up = _probe_at(a.session, "k", "do_fork")
    if up is None:
        return "the do_fork probe is gone: plant it again with kprobe do_fork."
    if up.obj.hits:
        return None
    return "the guest ran, but no fork went past do_fork yet: run it further (run with no budget)."


def _slot_of_do_fork(a: Attempt) -> str | None:
    up = _probe_at(a.session, "k", "do_fork")
    shown = [d.get("probe") for d in a.data or []]
    if up is not None and up.number in shown:
        return None
    return f"that showed the slot of probe {', '.join(map(str, shown)) or 'none'}, not of the do_fork kprobe."


def _fresh(a: Attempt) -> str | None:
    m = a.session.machine
    if m.time_ns == 0 and _probe_at(a.session, "r", "path_lookup_recursive") is not None:
        return None
    return "the machine is not fresh, or the kretprobe is missing (plant it, then reset)."


def _stopped_in_recursion(a: Attempt) -> str | None:
    stop = a.session.stop_event
    target = eval_address(a.session, "path_lookup_recursive+0x86")
    if stop is not None and stop.rip == target:
        return None
    where = a.session.machine.symbols.format(a.session.machine.rip, with_size=False)
    return f"the guest stopped at {where}, not at the breakpoint in path_lookup_recursive."


def _hijacked(a: Attempt) -> str | None:
    if any(slot.get("kind") == "trampoline" for slot in a.data or []):
        return None
    return "no slot shown holds kretprobe_trampoline: show more slots (stack 24)."


def _halted(a: Attempt) -> str | None:
    stop = a.session.stop_event
    return None if stop is not None and stop.is_final else "the guest has not finished yet: continue again."


def _any(_a: Attempt) -> None:
    return None


def _open_pool(session):
    up = _probe_at(session, "r", "do_sys_open")
    return up.obj if up is not None else None


def _small_pool(a: Attempt) -> str | None:
    rp = _open_pool(a.session)
    if rp is None:
        return _placed("r", "do_sys_open", "a kretprobe")(a)
    if rp.maxactive == 1:
        return None
    return f"that kretprobe has a pool of {rp.maxactive} instances; this step wants only one (maxactive=1)."


def _fresh_small_pool(a: Attempt) -> str | None:
    if a.session.machine.time_ns == 0 and _open_pool(a.session) is not None:
        return None
    return "the machine is not fresh, or the do_sys_open kretprobe is missing."


def _missed(a: Attempt) -> str | None:
    rp = _open_pool(a.session)
    if rp is None:
        return "the do_sys_open kretprobe is gone."
    if rp.nmissed:
        return None
    return "no call was missed yet: run the guest to the end (run)."


L1 = "Lesson 1: a first kprobe"
L2 = "Lesson 2: the copy in the insn slot"
L4 = "Lesson 3: return probes and the hijacked return address"
L5 = "Lesson 4: when maxactive is too small"

STEPS = [
    Step(L1, "A kprobe is a breakpoint the kernel plants on itself: the first byte of the probed "
             "instruction becomes int3 (cc). Every new task goes through do_fork.",
         "Plant a kprobe on do_fork.", ("kprobe",), lambda s: "kprobe do_fork",
         _placed("k", "do_fork", "a kprobe"),
         "register_kprobe copied do_fork's first instruction into an insn slot and wrote int3 over it.",
         undo_probes=True),
    Step(L1, "Memory now holds the int3. Look at the first 4 bytes of do_fork as bytes in hex.",
         "Examine do_fork's first bytes.", ("x",), lambda s: "x/4xb do_fork", _examined_do_fork,
         "cc[55]: memory holds cc (int3), the original byte 55 (push rbp) is kept beside it by the kprobe."),
    Step(L1, "Let the guest run: init forks its tasks, and each fork traps on the int3.",
         "Run the guest.", ("run", "continue"), lambda s: "run", _ran_probe,
         "Each trace line is one hit: do_int3 found the probe, ran its pre_handler (the trace line), "
         "single-stepped the copy out of line and went on after do_fork's first instruction."),
    Step(L1, "The probe counts its hits and misses.", "List the probes.", ("probes",), lambda s: "probes", _any,
         "Hits is how many times the int3 was taken; Missed counts hits that came while a probe handler "
         "was already running; Mode says how the copy runs: single-step under TF, or boost (the copy "
         "and its jmp back run without the debug trap)."),
    Step(L2, "The copy of the probed instruction lives in an insn slot, a page near the kernel text, "
             "followed by a jmp back.",
         "Show the slot of the do_fork kprobe.", ("slot",), lambda s: f"slot {_number_of(s, 'k', 'do_fork')}",
         _slot_of_do_fork,
         "The slot copy runs in place of the original; a RIP-relative operand would be re-targeted so it "
         "still reaches the same data, and after the step resume_execution puts rip back after do_fork's "
         "instruction."),
    Step(L4, "A kretprobe is a kprobe on a function's entry whose handler swaps the return address on the "
             "stack for kretprobe_trampoline, keeping the real one in a kretprobe_instance. "
             "path_lookup_recursive calls itself five deep.",
         "Plant a kretprobe on path_lookup_recursive.", ("kretprobe",),
         lambda s: "kretprobe path_lookup_recursive", _placed("r", "path_lookup_recursive", "a kretprobe"),
         "The kretprobe is registered with a pool of maxactive instances, one per call in flight.",
         undo_probes=True),
    Step(L4, "To watch the recursion from its start, boot a fresh machine: reset registers the probes again.",
         "Boot a fresh machine.", ("reset",), lambda s: "reset", _fresh,
         "Same image, clock at 0, your probes re-registered with their counters at zero."),
    Step(L4, "Stop in the deepest of the recursive calls: path_lookup_recursive+0x86 is inside it.",
         "Set a temporary breakpoint at path_lookup_recursive+0x86.", ("tbreak", "break"),
         lambda s: "tbreak path_lookup_recursive+0x86",
         _placed("t", "path_lookup_recursive+0x86", "a temporary breakpoint"),
         "The breakpoint is set; it deletes itself when hit.", undo_probes=True),
    Step(L4, "Run to the breakpoint.", "Run the guest.", ("run", "continue"), lambda s: "run",
         _stopped_in_recursion, "The guest stopped inside path_lookup_recursive, five calls deep."),
    Step(L4, "Each call's return address on the stack was swapped for kretprobe_trampoline.",
         "Show 24 slots of the stack.", ("stack",), lambda s: "stack 24", _hijacked,
         "The slots marked kretprobe_trampoline are hijacked return addresses: each names the instance "
         "that keeps the real return address, where the trampoline will send the return."),
    Step(L4, "The instances are kept in kretprobe_inst_table, 64 buckets chosen by hash_ptr(task).",
         "Draw the instance table.", ("instances",), lambda s: "instances --table", _any,
         "One task, one bucket: its five instances are chained newest first, as the trampoline finds them "
         "when the calls return, innermost first."),
    Step(L4, "Let the calls return: each return goes through the trampoline, which runs the handler "
             "(the trace line) and jumps to the real address.",
         "Continue to the end.", ("continue", "run"), lambda s: "continue", _halted,
         "Every return was traced with its real return site, never the trampoline: int3, the slot, "
         "the hijacked return."),
    Step(L5, "Each kretprobe owns a fixed pool of maxactive instances, one per call in flight. "
             "Five tasks sleep inside do_sys_open at once: try a pool of one.",
         "Plant a kretprobe on do_sys_open with maxactive=1.", ("kretprobe",),
         lambda s: "kretprobe do_sys_open maxactive=1", _small_pool,
         "One instance: the first call in flight takes it, the others find the pool empty.", undo_probes=True),
    Step(L5, "Start again from a fresh machine.", "Boot a fresh machine.", ("reset",), lambda s: "reset",
         _fresh_small_pool, "Fresh machine; every probe registered again with its counters at zero."),
    Step(L5, "Run it all.", "Run the guest.", ("run", "continue"), lambda s: "run", _missed,
         "While one task held the only instance, the other tasks' calls could not be hijacked: "
         "pre_handler_kretprobe counted them in nmissed and their returns were never traced "
         "(the warning at the end says so)."),
    Step(L5, "Count what was missed.", "List the probes.", ("probes",), lambda s: "probes", _any,
         "Missed on the do_sys_open kretprobe is the number of calls whose return was lost. The kernel's "
         "default pool is max(10, 2*NR_CPUS); always look at nmissed. scripts/demos has the longer lessons, "
         "docs/notebooks the same as notebooks."),
]

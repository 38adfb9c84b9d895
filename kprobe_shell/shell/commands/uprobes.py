"""uprobe commands: uprobe, uretprobe, uprobe_profile (probes on the programs' code)."""
from __future__ import annotations

import os

from ...tracing.probe_events import is_uprobe_point
from ...uprobes.types import MAX_URETPROBE_DEPTH
from ..registry import CommandError, command
from ..userprobes import create_probe_event, describe_new
from .common import parse_number

_LOCATION = ("PATH:FUNC[+OFF] (perf probe) or PATH:OFFSET (a file offset, as uprobe_events takes it); "
             "PATH names the program given to exec, with a slash (./prog)")


def _location(session, word: str) -> str:
    if not is_uprobe_point(word):
        raise CommandError(f"'{word[:60]}' is not a uprobe location: {_LOCATION}")
    return word


@command("uprobe", repeatable=False, group="probes", aliases=("up",), args=("location",),
         summary="plant a uprobe on a program's code: one trace line per hit",
         usage="uprobe PATH:FUNC[+OFF] | PATH:OFFSET [ARGS...]",
         example="uprobe ./hello:main\nuprobe ./wc:count_words+0x4\nuprobe ./wc:0x1795 +0(%di):ustring")
def cmd_uprobe(session, rest: str):
    """Register a uprobe (Linux 3.5+): the int3 goes into the program's text in every
process that maps it, now and at each exec; a hit runs the handler, then the instruction
is single-stepped from a copy in the process's own "[uprobes]" page. Arguments as in
uprobe_events (%di, +0(%si):ustring, $argN, $comm, DWARF names from the program)."""
    words = rest.split()
    if not words:
        raise CommandError(f"usage: uprobe LOCATION [ARGS...]: {_LOCATION}")
    up = create_probe_event(session, "p " + " ".join([_location(session, words[0])] + words[1:]))
    describe_new(session, up)
    return {"number": up.number, "addr": up.addr, "event": up.event}


@command("uretprobe", repeatable=False, group="probes", aliases=("urp",), args=("location",),
         summary="plant a uretprobe: a trace line when a program's function returns",
         usage="uretprobe PATH:FUNC | PATH:OFFSET [maxactive=N] [ARGS...]",
         example="uretprobe ./hello:main\nuretprobe ./wc:count_words maxactive=4 $retval")
def cmd_uretprobe(session, rest: str):
    """Register a uretprobe: at the function's entry the return address on the user stack
is swapped for the trampoline in the process's "[uprobes]" page and a return instance
kept per task (see `instances`); the return runs the handler. A task keeps at most 64
(MAX_URETPROBE_DEPTH) instances; maxactive=N caps this probe's per task (Linux has no
such cap: an omitted return counts in nmissed)."""
    words = rest.split()
    if not words:
        raise CommandError(f"usage: uretprobe LOCATION [maxactive=N] [ARGS...]: {_LOCATION}")
    maxactive = None
    args = []
    for w in words[1:]:
        if w.startswith("maxactive="):
            maxactive = parse_number(w.split("=", 1)[1], "maxactive")
            if not 1 <= maxactive <= MAX_URETPROBE_DEPTH:
                raise CommandError(f"maxactive must be from 1 to {MAX_URETPROBE_DEPTH} (MAX_URETPROBE_DEPTH)")
        else:
            args.append(w)
    up = create_probe_event(session, "r " + " ".join([_location(session, words[0])] + args), maxactive=maxactive)
    describe_new(session, up)
    return {"number": up.number, "addr": up.addr, "event": up.event}


@command("uprobe_profile", group="probes", repeatable=False,
         summary="hits per uprobe event, as ftrace's uprobe_profile", usage="uprobe_profile")
def cmd_uprobe_profile(session, rest: str):
    """ftrace's uprobe_profile: `  FILE EVENT(44 wide) HITS(15)` per uprobe event."""
    if rest.strip():
        raise CommandError("usage: uprobe_profile")
    data = []
    for up in session.probes.sorted():
        if up.kind not in ("u", "ur"):
            continue
        path = up.obj.path
        session.out.print(f"  {path} {up.event:<44} {up.obj.hits:>15}")
        data.append({"file": os.path.basename(path), "event": up.event, "probe": up.number, "hits": up.obj.hits})
    if not data:
        session.out.print("No uprobes.")
    return data

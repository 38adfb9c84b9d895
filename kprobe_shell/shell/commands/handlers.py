"""`handlers FILE.py`: load, list and unload handler files (loading: handler_files.py)."""
from __future__ import annotations

import os

from ..handler_files import handler_files, load_handler_file
from ..registry import CommandError, command
from ..userprobes import delete_user_probe


@command("handlers", group="probes", args=("file",), repeatable=False,
         summary="load probes written in Python (a handler file); again to replace them",
         usage="handlers [FILE.py | --unload FILE.py]",
         example="handlers opens.py\nhandlers\nhandlers --unload opens.py")
def cmd_handlers(session, rest: str):
    """Load a Python handler file: functions decorated with @kprobe("sym[+off]"),
@kretprobe("sym", maxactive=N, entry_handler=f) and @jprobe("sym") from kprobe_shell.handlers
(or init(machine) calling machine.register_kprobe(...) ...) become numbered probes.
Helpers: current() comm() pid() retval() read_string() read_struct() read_u32() symbol(),
emit(**fields) for an ftrace trace line, count/hist/lhist/sum_/avg/stats for maps.
Loading the same file again replaces its probes. A syntax error, an exception at import
or a probe that cannot be placed is one FILE:LINE error and registers nothing. A handler
that raises is reported with its FILE:LINE and counted in the probe's faults; the guest
goes on. Without an argument: the loaded files and their probes."""
    args = session.split_args(rest)
    out = session.out
    if not args:
        files = handler_files(session)
        if not files:
            out.print("No handler files loaded.")
        for path, ups in files.items():
            out.print(f"{path}: " + ", ".join(f"{u.number} {u.kind} {u.event} ({u.location})" for u in ups))
        return {path: [u.number for u in ups] for path, ups in files.items()}
    if args[0] == "--unload":
        if len(args) != 2:
            raise CommandError("usage: handlers --unload FILE.py")
        key = os.path.abspath(args[1])
        ups = handler_files(session).get(key)
        if not ups:
            raise CommandError(f"{args[1]} is not loaded (see 'handlers')")
        for up in ups:
            delete_user_probe(session, up)
        out.print(f"Unloaded {args[1]}: deleted {', '.join(str(u.number) for u in ups)}")
        return None
    if len(args) != 1:
        raise CommandError("usage: handlers FILE.py")
    path = os.path.expanduser(args[0])
    before = handler_files(session).get(os.path.abspath(path), [])
    created = load_handler_file(session, path)
    fmt = session.machine.symbols.format
    word = {"k": "Kprobe", "j": "Jprobe", "r": "Kretprobe", "u": "Uprobe", "ur": "Uretprobe"}
    for up in created:
        extra = f" maxactive={up.obj.maxactive}" if up.kind in ("r", "ur") else ""
        what = (f"{up.obj.program.describe(up.addr)} [{up.obj.program.name}]" if up.kind in ("u", "ur")
                else fmt(up.addr))
        out.print(f"{word[up.kind]} {up.number} at 0x{up.addr:x}: {what}{extra}  "
                  f"{up.event} ({os.path.basename(up.spec['where'])})")
    replaced = f", replacing {', '.join(str(u.number) for u in before)}" if before else ""
    out.print(f"Loaded {path}: {len(created)} probe(s){replaced}")
    return {"file": os.path.abspath(path), "probes": [u.number for u in created],
            "replaced": [u.number for u in before]}

"""`handlers FILE.py`: probes written in Python (see kprobe_shell/handlers.py for the API).

Loading is all-or-nothing, like insmod: the file is compiled and run, its decorators and
init(machine) collect probe requests, every request is checked against the image, and
only then are the file's previous probes (if it was loaded before) unregistered and the
new ones registered.  A mistake anywhere is one line, FILE:LINE: what, and changes nothing.
"""
from __future__ import annotations

import fnmatch
import functools
import os
import sys
import traceback
import types

from ... import handlers as H
from ...api import Jprobe, Kprobe, Kretprobe, ProbeError
from ...kprobes.core import EXEC_PATH_PATTERNS, EXIT_PATH_PATTERNS
from ...userfiles import UserFileError, decode_text, printable_name, read_user_file
from ..registry import CommandError, command
from ..session import UserProbe
from .common import parse_location


# ---------------------------------------------------------------------- wrapping user code
def _in_context(session, up, fn, *, returns: bool = False, commands: bool = False):
    """fn(ri, regs) / fn(p, regs) / fn(*args) with the helpers pointed at this hit.

    Exceptions go through untouched: the engine reports them with the user's file:line,
    charges them to the probe (its `faults`) and the guest goes on."""

    @functools.wraps(fn)  # keeps the signature: a jprobe without DWARF counts its arguments
    def call(*args):
        ri = args[0] if returns else None
        with H.active(H.HitContext(session, up, ri)):
            try:
                result = fn(*args)
            except SystemExit as exc:
                # sys.exit() in a handler must not end the shell: it is the handler's fault,
                # reported with the handler's file:line (the traceback is kept).
                raise H.HandlerUsageError(f"sys.exit({exc.code!r}) in a probe handler").with_traceback(
                    exc.__traceback__) from None
        if commands:  # `commands N ... end`, once per hit, as for the shell's own probes
            session.run_probe_commands(up)
        return result

    return call


def _first_args(fn):
    """A jprobe function may take fewer parameters than the probed function has (the
    kernel's jprobe handlers must mirror the prototype; leaving off trailing ones is harmless)."""
    from ...kprobes.jprobes import _positional_count

    n = _positional_count(fn)

    @functools.wraps(fn)
    def entry(*args):
        return fn(*args[:n])

    return entry


def _pre_wrapper(session, up, fn):
    inner = _in_context(session, up, fn, commands=True)

    def pre_handler(p, regs):
        # The kernel's contract: non-zero means "I changed rip, do not single-step".
        return 1 if inner(p, regs) else 0

    return functools.update_wrapper(pre_handler, fn)


def create_handler_probe(session, up: UserProbe) -> UserProbe:
    """Register (or, after reset/load, register again) one probe of a handler file."""
    m = session.machine
    spec = up.spec
    req: H.ProbeRequest = spec["request"]
    sym, off, addr = spec["symbol"], spec["offset"], spec["addr"]
    if sym is not None:
        if sym not in m.symbols:
            raise CommandError(m.symbols.unknown_message(sym))
        addr = m.symbols[sym].address + off
    # The user's own object (init(machine) + register_*) is registered the first time;
    # after reset/load a fresh one is built from the same handlers.
    obj = req.obj if (req.obj is not None and not spec.get("_obj_taken")) else None
    spec["_obj_taken"] = True
    where = dict(addr=None if sym else addr)
    if up.kind == "k":
        if obj is None:
            obj = Kprobe(sym, off, **where, name=up.event)
        obj.pre_handler = _pre_wrapper(session, up, req.handler) if req.handler else None
        obj.post_handler = _in_context(session, up, req.post_handler) if req.post_handler else None
        obj.fault_handler = _in_context(session, up, req.fault_handler) if req.fault_handler else None
        up.obj = obj
        m.register_kprobe(obj)
    elif up.kind == "j":
        entry = _in_context(session, up, _first_args(req.handler), commands=True)
        if obj is None:
            obj = Jprobe(sym, entry, **where, name=up.event)
        obj.entry = entry
        up.obj = obj
        m.register_jprobe(obj)
    else:
        handler = _in_context(session, up, req.handler, returns=True, commands=True) if req.handler else None
        entry = _in_context(session, up, req.entry_handler) if req.entry_handler else None
        if obj is None:
            obj = Kretprobe(sym, handler, req.maxactive, **where, entry_handler=entry, name=up.event)
        obj.handler, obj.entry_handler = handler, entry
        up.obj = obj
        m.register_kretprobe(obj)
    up.addr = obj.addr
    if not up.enabled:
        m.disable_probe(obj)
    return session.add_user_probe(up)


# ---------------------------------------------------------------------- loading a file
def _error_where(path: str, exc: BaseException) -> str:
    """FILE:LINE of the innermost frame of the handler file, else of the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
    frame = (mine or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame else path


def _run_module(session, path: str, source: str) -> tuple[types.ModuleType, list[H.ProbeRequest]]:
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise CommandError(f"{path}:{exc.lineno}: SyntaxError: {exc.msg}") from None
    except ValueError as exc:  # NUL bytes in the source
        raise CommandError(f"{path}: cannot compile: {exc}") from None
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    module = types.ModuleType(f"kprobe_handlers.{stem}")
    module.__file__ = path
    with H.collecting(path) as col, H.active(H.HitContext(session)):
        # Importable while it runs (dataclasses, pickling look the module up).
        previous = sys.modules.get(module.__name__)
        sys.modules[module.__name__] = module
        try:
            exec(code, module.__dict__)  # noqa: S102 - running the user's handler file is the point
            init = module.__dict__.get("init")
            if callable(init):
                init(H.MachineProxy(session, col))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import-time error is the user's
            if previous is not None:
                sys.modules[module.__name__] = previous
            else:
                sys.modules.pop(module.__name__, None)
            raise CommandError(f"{_error_where(path, exc)}: {type(exc).__name__}: {exc}") from None
    return module, col.requests


def _event_names(session, path: str, requests: list[H.ProbeRequest]) -> list[str]:
    """Each request's event name: name= or the function's; repeats get _2, _3 ..."""
    taken = {up.event: up for up in session.probes.values() if up.spec.get("handler_file") != path}
    names, seen = [], {}
    for req in requests:
        base = req.name or req.default_name
        if not base.isidentifier():
            raise CommandError(f"{req.where}: event name '{base}' must be a C identifier")
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        if name in taken:
            raise CommandError(f"{req.where}: event '{name}' already exists (probe {taken[name].number}); "
                               "pass name= to the decorator")
        names.append(name)
    return names


def _check_request(session, req: H.ProbeRequest, replaced: list[UserProbe], planned_jprobes: set) -> tuple:
    """Everything registration could refuse, checked before anything changes."""
    m = session.machine
    sym, off, addr = parse_location(session, req.target)
    try:
        m.kprobes.check_probe_address(addr)
    except ProbeError as exc:
        raise CommandError(str(exc)) from None
    hit = m.symbols.containing(addr)
    func = hit[0].name if hit else hex(addr)
    if req.kind in ("r", "j") and (hit is None or hit[1] != 0):
        what = "return probe" if req.kind == "r" else "jprobe"
        raise CommandError(f"a {what} goes on a function's entry, not {req.target}")
    if req.kind == "r" and any(fnmatch.fnmatchcase(func, p) for p in EXEC_PATH_PATTERNS + EXIT_PATH_PATTERNS):
        raise CommandError(f"refusing a return probe on {func}: the 2005 kernel flushes the task's "
                           "return-probe instances while it runs (see `help kretprobe`, --unsafe)")
    if req.kind == "j":
        others = [up for up in session.probes.values() if up.kind == "j" and up.addr == addr and up not in replaced]
        if others or addr in planned_jprobes:
            raise CommandError(f"0x{addr:x} ({func}) already has a jprobe: at most one jprobe per address")
        planned_jprobes.add(addr)
    if req.handler is None and req.kind != "k":
        raise CommandError("a probe without a handler")
    return sym, off, addr


def load_handler_file(session, path: str) -> list[UserProbe]:
    key = os.path.abspath(path)
    try:
        source = decode_text(read_user_file(path))
    except UserFileError as exc:
        raise CommandError(f"cannot read {printable_name(path)}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc.reason})") from None
    _module, requests = _run_module(session, path, source)
    if not requests:
        raise CommandError(f"{path}: no probes: decorate functions with @kprobe/@kretprobe/@jprobe "
                           "or define init(machine) with register_* calls")
    names = _event_names(session, key, requests)
    replaced = [up for up in session.probes.values() if up.spec.get("handler_file") == key]
    planned: list[tuple] = []
    jprobes: set = set()
    for req in requests:
        try:
            planned.append(_check_request(session, req, replaced, jprobes))
        except CommandError as exc:
            raise CommandError(f"{req.where}: {exc}") from None

    # Checked: now replace the file's old probes by the new ones.
    from .probes import delete_user_probe

    for up in sorted(replaced, key=lambda u: u.number):
        delete_user_probe(session, up)
    created: list[UserProbe] = []
    for req, name, (sym, off, addr) in zip(requests, names, planned):
        up = UserProbe(number=0, kind=req.kind, location=req.target, addr=addr, event=name,
                       spec={"handler_file": key, "request": req, "symbol": sym, "offset": off, "addr": addr,
                             "where": req.where})
        try:
            created.append(create_handler_probe(session, up))
        except (ProbeError, CommandError) as exc:
            # Something the checks did not foresee: undo, and put the old probes back.
            for done in created:
                delete_user_probe(session, done)
            for old in sorted(replaced, key=lambda u: u.number):
                session._recreate(old)
            raise CommandError(f"{req.where}: {exc}") from None
    return created


def handler_files(session) -> dict[str, list[UserProbe]]:
    files: dict[str, list[UserProbe]] = {}
    for up in sorted(session.probes.values(), key=lambda u: u.number):
        f = up.spec.get("handler_file")
        if f:
            files.setdefault(f, []).append(up)
    return files


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
        from .probes import delete_user_probe

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
    word = {"k": "Kprobe", "j": "Jprobe", "r": "Kretprobe"}
    for up in created:
        extra = f" maxactive={up.obj.maxactive}" if up.kind == "r" else ""
        out.print(f"{word[up.kind]} {up.number} at 0x{up.addr:x}: {fmt(up.addr)}{extra}  "
                  f"{up.event} ({os.path.basename(up.spec['where'])})")
    replaced = f", replacing {', '.join(str(u.number) for u in before)}" if before else ""
    out.print(f"Loaded {path}: {len(created)} probe(s){replaced}")
    return {"file": os.path.abspath(path), "probes": [u.number for u in created],
            "replaced": [u.number for u in before]}

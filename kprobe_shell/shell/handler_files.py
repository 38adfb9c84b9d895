"""Handler files: probes written in Python (see kprobe_shell/handlers.py for the API).

Loading is all-or-nothing, like insmod: the file is compiled and run, its decorators and
init(machine) collect probe requests, every request is checked against the image, and
only then are the file's previous probes (if it was loaded before) unregistered and the
new ones registered.  A mistake anywhere is one line, FILE:LINE: what, and changes nothing.
"""
from __future__ import annotations

import fnmatch
import inspect
import os
import sys
import traceback
import types

from ..userfiles import UserFileError, decode_text, printable_name, read_user_file
from .. import handlers as H
from ..api import ProbeError
from ..kprobes.core import EXEC_PATH_PATTERNS, EXIT_PATH_PATTERNS, describe_handler_exception
from ..kprobes.guard import HandlerInterrupted, HandlerTimeout, guarded_caller
from ..kprobes.kretprobes import MAXACTIVE_MAX
from .locations import parse_location
from .registry import CommandError
from .userprobes import UserProbe, create_from_spec, create_handler_probe, delete_user_probe, uprobe_of_request


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
            _exec_guarded(session, code, module, col)
        except BaseException as exc:  # noqa: BLE001 - any import-time error is the user's
            if previous is not None:
                sys.modules[module.__name__] = previous
            else:
                sys.modules.pop(module.__name__, None)
            raise CommandError(f"{_error_where(path, exc)}: {_load_failure(exc)}") from None
    return module, col.requests


@guarded_caller
def _exec_guarded(session, code, module, col) -> None:
    """Run the file and its init() as a handler runs: under the engine's guard, so a file
    that loops is stopped by handler-timeout or Ctrl-C (guard.py)."""
    guard = session.machine.kprobes.guard
    guard.watch_this_thread()
    depth = guard.enter()
    try:
        exec(code, module.__dict__)  # noqa: S102 - running the user's handler file is the point
        init = module.__dict__.get("init")
        if callable(init):
            init(H.MachineProxy(session, col))
    finally:
        guard.leave(depth)


def _load_failure(exc: BaseException) -> str:
    if isinstance(exc, (HandlerTimeout, HandlerInterrupted, KeyboardInterrupt)):
        return f"loading the file {describe_handler_exception(exc)}; nothing changed"
    return f"{type(exc).__name__}: {exc}"


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
    if req.kind in ("u", "ur"):
        up = uprobe_of_request(req)
        try:
            prog, vaddr = m.uprobes.resolve(up)
            prog.check_probe_address(vaddr)
        except ProbeError as exc:
            raise CommandError(str(exc)) from None
        if req.handler is None:
            raise CommandError("a probe without a handler")
        return None, 0, vaddr
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
        _check_jprobe_arity(m, req, func)
    if req.handler is None and req.kind != "k":
        raise CommandError("a probe without a handler")
    if req.kind == "r" and req.maxactive > MAXACTIVE_MAX:
        raise CommandError(f"maxactive {req.maxactive} is too big (at most {MAXACTIVE_MAX})")
    return sym, off, addr


def _check_jprobe_arity(machine, req: H.ProbeRequest, func: str) -> None:
    """A jprobe function gets the probed call's arguments: one that needs more than the
    function has (its DWARF parameters) would fail at every hit, so refuse it now."""
    params = machine.image.parameters.get(func)
    if params is None or req.handler is None:
        return
    try:
        sig = inspect.signature(req.handler)
    except (TypeError, ValueError):
        return
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    needed = [p for p in sig.parameters.values() if p.kind in kinds and p.default is p.empty]
    if len(needed) > len(params):
        name = getattr(req.handler, "__name__", "the handler")
        have = ", ".join(p.name for p in params) or "none"
        raise CommandError(f"{name} takes {len(needed)} arguments but {func} has {len(params)} ({have}): "
                           "a jprobe function takes the probed function's arguments, or fewer")


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
    if replaced and session._in_probe_commands:
        raise CommandError(f"{path} cannot be loaded again inside a probe's commands: its probes cannot be "
                           "unregistered while a probe is being handled")
    planned: list[tuple] = []
    jprobes: set = set()
    for req in requests:
        try:
            planned.append(_check_request(session, req, replaced, jprobes))
        except CommandError as exc:
            raise CommandError(f"{req.where}: {exc}") from None

    # Checked: now replace the file's old probes by the new ones.
    next_number = session.probes.next_number
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
            # Something the checks did not foresee: undo, and put the old probes back
            # under their numbers (their counters and in-flight instances are lost).
            for done in created:
                delete_user_probe(session, done)
            for old in sorted(replaced, key=lambda u: u.number):
                create_from_spec(session, old)
            session.probes.next_number = next_number
            raise CommandError(f"{req.where}: {exc}") from None
    return created


def handler_files(session) -> dict[str, list[UserProbe]]:
    files: dict[str, list[UserProbe]] = {}
    for up in sorted(session.probes.values(), key=lambda u: u.number):
        f = up.spec.get("handler_file")
        if f:
            files.setdefault(f, []).append(up)
    return files

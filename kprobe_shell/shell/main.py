"""Starting the shell: batch mode (scripts, -ex, stdin) or the interactive prompt."""
from __future__ import annotations

import sys

from ..userfiles import UserFileError, printable_name, read_user_file, text_lines
from .output import Output
from .registry import CommandError


def _serve_gdb(session, where: str) -> bool:
    """--gdb [HOST:]PORT: wait for gdb and let it drive the machine until it detaches."""
    from .commands.gdbserver import serve_gdb

    try:
        serve_gdb(session, where)
    except CommandError as exc:
        session.out.error(f"kprobe-shell: --gdb {where}: {exc}")
        return False
    return True


def run_shell(args) -> int:
    from .config import load_config
    from .registry import QuitRequest
    from .script import run_lines
    from .session import Session
    from .settings import CONFIG_SETTINGS

    config = load_config()
    color = {"on": True, "off": False}.get(args.color, config.get("color"))
    colors = config.get("colors", {})
    out = Output(sys.stdout, err_stream=sys.stderr, color=color, json_mode=args.json,
                 palette={role: sgr for role, (sgr, _ptk) in colors.items() if sgr})
    for warning in config.get("warnings", ()):
        print(f"kprobe-shell: warning: {warning}", file=sys.stderr)
    settings = {k: v for k, v in config.items() if k in CONFIG_SETTINGS}
    if getattr(args, "ram", None) is not None:
        settings["ram-mib"] = args.ram
    if getattr(args, "keep_workload", False):
        settings["keep-workload"] = True
    try:
        session = Session(args.image, output=out, timer_period=args.timer_period, settings=settings,
                          cpus=getattr(args, "cpus", None))
    except CommandError as exc:
        out.error(f"kprobe-shell: {exc}")
        return 2
    session.batch = bool(args.batch)
    # As gdb: -ex and -x commands run first, then the prompt, unless --batch.
    interactive = not args.batch and sys.stdin.isatty() and sys.stdout.isatty()
    try:
        for kind, value in args.actions:
            if kind == "ex":
                try:
                    session.execute_and_report(value)
                except CommandError as exc:
                    out.error(f"-ex '{value}': {exc}")
                    if args.batch:
                        return 1
            else:
                try:
                    lines = text_lines(read_user_file(value))
                except UserFileError as exc:
                    out.error(f"kprobe-shell: cannot read {printable_name(value)}: {exc}")
                    return 1 if args.batch else 2
                except UnicodeDecodeError:
                    # -x of a binary file: say so, as `source` does, instead of a traceback.
                    out.error(f"kprobe-shell: cannot read {value}: not a text file")
                    return 1 if args.batch else 2
                try:
                    run_lines(session, lines, value)
                except CommandError as exc:
                    out.error(str(exc))
                    if args.batch:
                        return 1
        # -ex and -x first (probes to have in place), then gdb, then the prompt or stdin.
        if getattr(args, "gdb", None) and not _serve_gdb(session, args.gdb):
            return 2
        if interactive:
            from .repl import run_repl

            return run_repl(session, config)
        if not args.batch and not sys.stdin.isatty() or (args.batch and not args.actions and not sys.stdin.isatty()):
            try:
                run_lines(session, sys.stdin, "<stdin>")
            except CommandError as exc:
                out.error(str(exc))
                return 1
            except UnicodeDecodeError:
                out.error("kprobe-shell: <stdin>: not text (invalid UTF-8)")
                return 1
    except QuitRequest:
        pass
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    finally:
        out.flush()
    if args.batch:
        return _guest_failed(session, out)
    return 0


def _guest_failed(session, out: Output) -> int:
    """gdb's batch mode exits non-zero when a command failed; here a run that ended on
    a guest fault or a kernel BUG is that failure, and is said so at the end."""
    from ..machine import StopReason

    event = session.stop_event
    what = {StopReason.FAULT: "a fault", StopReason.BUG: "a kernel BUG"}.get(event.reason) if event else None
    if what is None:
        return 0
    out.error(f"kprobe-shell: the guest stopped on {what} ({event.message}); exiting with status 1")
    out.flush()
    return 1

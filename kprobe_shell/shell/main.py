"""Starting the shell: batch mode (scripts, -ex, stdin) or the interactive prompt."""
from __future__ import annotations

import sys

from .output import Output
from .registry import CommandError


def run_shell(args) -> int:
    from .config import load_config
    from .registry import QuitRequest
    from .script import run_lines
    from .session import Session
    from .settings import CONFIG_SETTINGS

    config = load_config()
    color = {"on": True, "off": False}.get(args.color, config.get("color"))
    colors = config.get("colors", {})
    out = Output(sys.stdout, color=color, json_mode=args.json,
                 palette={role: sgr for role, (sgr, _ptk) in colors.items() if sgr})
    for warning in config.get("warnings", ()):
        print(f"kprobe-shell: warning: {warning}", file=sys.stderr)
    settings = {k: v for k, v in config.items() if k in CONFIG_SETTINGS}
    try:
        session = Session(args.image, output=out, timer_period=args.timer_period, settings=settings,
                          cpus=getattr(args, "cpus", None))
    except CommandError as exc:
        out.error(f"kprobe-shell: {exc}")
        return 2
    session.batch = bool(args.batch)
    interactive = not args.actions and not args.batch and sys.stdin.isatty() and sys.stdout.isatty()
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
                    with open(value, encoding="utf-8") as f:
                        lines = f.readlines()
                except OSError as exc:
                    out.error(f"kprobe-shell: cannot read {value}: {exc.strerror}")
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

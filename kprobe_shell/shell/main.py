"""Starting the shell: batch mode (scripts, -ex, stdin) or the interactive prompt."""
from __future__ import annotations

import sys

from .output import Output
from .registry import CommandError


def _checked_settings(config: dict, out: Output) -> dict:
    """The config file's settings that `set` would accept; a bad one is skipped with a
    warning ([robustness fix]: `kprobe-mode = fast` or `timer-period = 5` in the config
    file stopped the shell from starting, the first with a traceback)."""
    from .commands.misc import _parse_setting

    settings = {}
    for key in ("timer-period", "kprobe-mode", "handler-error", "handler-timeout", "history-size"):
        if key not in config:
            continue
        value = config[key]
        text = "off" if value is None and key == "handler-timeout" else str(value)
        try:
            settings[key] = _parse_setting(key, text)
        except CommandError as exc:
            out.error(f"kprobe-shell: config file: ignoring '{key} = {text}': {exc}")
    return settings


def run_shell(args) -> int:
    from .commands.misc import QuitRequest
    from .config import load_config
    from .script import run_lines
    from .session import Session

    config = load_config()
    color = {"on": True, "off": False}.get(args.color, config.get("color"))
    out = Output(sys.stdout, color=color, json_mode=args.json)
    settings = _checked_settings(config, out)
    try:
        session = Session(args.image, output=out, timer_period=args.timer_period, settings=settings)
    except CommandError as exc:
        out.error(f"kprobe-shell: {exc}")
        return 2
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
                    # [robustness fix] a binary file given with -x ended in a traceback.
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
        elif not args.batch and not args.actions:
            pass
    except QuitRequest:
        pass
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    finally:
        out.flush()
    return 0

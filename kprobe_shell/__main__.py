"""kprobe-shell [IMAGE] [--batch] [-ex CMD]... [-x FILE]... [--json] [--timer-period N] [--cpus N] [--gdb [HOST:]PORT]

The commands of -x files and -ex options run in order, then, as in gdb, the interactive
prompt when stdin and stdout are a terminal (stdin's commands when it is not).  With --batch
the shell exits afterwards instead, non-zero on the first error.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kprobe-shell",
        description="Linux 2.6 kprobes, jprobes and kretprobes on an emulated x86_64 machine.",
    )
    p.add_argument("image", nargs="?", help="guest ELF image (default: the bundled minikernel)")
    p.add_argument("--batch", "-batch", action="store_true", help="run the commands, then exit (non-zero on error)")
    p.add_argument("-ex", "--eval-command", dest="actions", action="append", type=lambda s: ("ex", s), default=[],
                   metavar="CMD", help="run a command (repeatable)")
    p.add_argument("-x", "--command", dest="actions", action="append", type=lambda s: ("x", s), metavar="FILE",
                   help="run the commands in FILE (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per command result and per event")
    p.add_argument("--timer-period", type=_cli_number, default=None, metavar="N",
                   help="guest instructions between timer interrupts (default 5000)")
    p.add_argument("--cpus", type=_cli_number, default=None, metavar="N",
                   help="virtual CPUs, 1-4 (default 1; the bundled kernel's SMP build for 2 or more)")
    p.add_argument("--gdb", metavar="[HOST:]PORT", default=None,
                   help="after the -ex and -x commands, wait for gdb on PORT (loopback unless HOST is given); "
                        "the shell takes over when gdb detaches")
    p.add_argument("--exec", dest="execs", action="append", default=[], metavar="'PROGRAM [ARG...]'",
                   help="run a static Linux program as a user process (repeatable; as -ex 'exec ...' given first)")
    p.add_argument("--ram", type=int, default=None, metavar="MIB",
                   help="guest RAM for user processes, in MiB (default 256)")
    p.add_argument("--keep-workload", action="store_true",
                   help="with --exec: run the built-in workload too")
    p.add_argument("--version", action="version", version=f"kprobe-shell {__version__}")
    p.add_argument("--color", choices=("auto", "on", "off"), default="auto", help="colour output")
    return p


def _cli_number(text: str) -> int:
    """A number option, read as the shell reads numbers (ASCII digits, at most 64 bits)."""
    from .numbers import NumberError, parse_int

    try:
        return parse_int(text)
    except NumberError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.actions = [("ex", "exec " + e) for e in args.execs] + args.actions
    from .shell.main import run_shell

    try:
        return run_shell(args)
    except BrokenPipeError:
        # The reader went away (`kprobe-shell ... | head`): stop quietly, as cat does.
        # stdout is pointed at /dev/null so the interpreter's final flush cannot fail again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the signal


if __name__ == "__main__":
    sys.exit(main())

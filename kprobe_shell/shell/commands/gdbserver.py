"""gdbserver: let gdb attach to the machine over the remote serial protocol."""
from __future__ import annotations

import threading

from ..registry import CommandError, command


def serve_gdb(session, spec: str) -> str:
    """Listen on [HOST:]PORT, serve one gdb until it detaches; how the session ended."""
    from ...gdbstub import GdbServer, parse_listen_address

    try:
        host, port = parse_listen_address(spec)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        server = GdbServer(session, host, port, log=lambda text: _say(session, text))
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = server.address
    where = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
    _say(session, f"Waiting for gdb on {where} (gdb: target remote {where}); the machine stays stopped until then")
    try:
        ended = server.serve()
    except KeyboardInterrupt:
        server.close()
        raise CommandError("gdbserver: stopped by Ctrl-C (gdb's breakpoints are gone; the shell takes over)") from None
    _say(session, f"{ended}; the shell takes over")
    return ended


def _say(session, text: str) -> None:
    session.out.print(text, "dim")
    session.out.flush()


@command("gdbserver", group="running", args=("text",), repeatable=False, runs_guest=True,
         summary="let gdb attach over the remote protocol ([HOST:]PORT, loopback by default)",
         usage="gdbserver [HOST:]PORT", example="gdbserver 1234\ngdbserver 0.0.0.0:1234")
def cmd_gdbserver(session, rest: str):
    """Wait, the guest stopped, until gdb attaches (`target remote :PORT`), then let gdb drive
the machine: registers, memory, breakpoints, watchpoints, stepping, the CPUs as threads.
gdb finds the kernel image and its DWARF by itself (qXfer:exec-file). `monitor CMD` in gdb
runs any shell command and prints its output (`monitor probes`, `monitor instances`,
`monitor disas vfs_read`). Probes stay live: gdb's memory reads show the int3 or jmp a
probe planted, and on an instruction that holds both a kprobe and a gdb breakpoint the
kprobe's handler runs first, then gdb stops (the kernel's int3 notifier chain order:
kprobes, then the debugger). `detach` (or gdb going away) gives the machine back to the
shell as gdb left it; `kill` gives the shell a fresh machine; Ctrl-C at the shell ends the
wait, or gdb's session (after stopping the guest gdb runs). PORT 0 picks a free port.
A monitor command that runs the guest (`monitor continue`) does run it, behind gdb's back:
gdb's registers and frames are stale until its next stop (`maint flush register-cache`)."""
    if not rest.strip() or len(rest.split()) != 1:
        raise CommandError("usage: gdbserver [HOST:]PORT")
    if session.background is not None and threading.current_thread() is session.background:
        raise CommandError("gdbserver waits for gdb and gives it the machine: not in the background (drop the '&')")
    serve_gdb(session, rest.strip())
    return None

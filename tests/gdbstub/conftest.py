"""Driving Debian's gdb (batch mode) against the stub: the stub serves a Session in a
thread of the test process, on a port the operating system picks; gdb runs as a
subprocess with a timeout, so a stuck side fails the test instead of hanging it."""
from __future__ import annotations

import io
import shutil
import subprocess
import threading

import pytest

from kprobe_shell.gdbstub import GdbServer
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session

GDB = shutil.which("gdb")
GDB_TIMEOUT = 60


class StubRun:
    """A session served to one gdb: start(), gdb(...), then ended() (how the stub's session
    ended) and the shell's output."""

    def __init__(self, session: Session, buffer: io.StringIO) -> None:
        self.session = session
        self.buffer = buffer
        self.server = GdbServer(session, "127.0.0.1", 0)
        self.result: list[str] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.server.serve()), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.port

    def gdb(self, *commands: str, image: str | None = None) -> str:
        """gdb -batch -nx -ex 'target remote :PORT' -ex CMD...: everything gdb printed."""
        argv = [GDB, "-batch", "-nx", "-ex", "set confirm off", "-ex", "set pagination off",
                "-ex", "set width 0", "-ex", f"target remote 127.0.0.1:{self.port}"]
        for command in commands:
            argv += ["-ex", command]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=GDB_TIMEOUT)
        return done.stdout + done.stderr

    def ended(self, timeout: float = 20.0) -> str:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stub did not end its session"
        return self.result[0]

    @property
    def shell_output(self) -> str:
        self.session.out.flush()
        return self.buffer.getvalue()


@pytest.fixture
def stub(raw_stub):
    """stub(*shell_commands, cpus=1) -> a StubRun waiting for gdb on a free port."""
    if GDB is None:
        pytest.skip("gdb is not installed (apt-get install gdb): these tests drive the real gdb")
    return raw_stub


@pytest.fixture
def raw_stub(kernel_path):
    """As stub, for tests that speak the protocol themselves (no gdb needed)."""
    runs: list[StubRun] = []

    def start(*commands: str, cpus: int = 1) -> StubRun:
        buffer = io.StringIO()
        session = Session(output=Output(buffer, color=False), cpus=cpus)
        for line in commands:
            session.execute(line)
        run = StubRun(session, buffer)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.server.close()

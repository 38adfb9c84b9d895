"""The connection: a socket gdb attaches to, the acks, and the loop that answers packets.

One gdb at a time.  A reader thread owns the socket's receiving side, so that the 0x03
interrupt is seen while the guest runs on the serving thread; everything else it reads
goes, in order, to the serving loop.  A connection that drops ends the session as a
detach does: gdb's breakpoints go, the machine stays as it is, the shell takes over.
"""
from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import time

from .packets import PacketHandlers, SessionEnd
from .protocol import PACKET_SIZE, PacketReader, frame
from .target import GdbTarget
from .toolsyms import tool_symbol_file, tool_symbols

#: How often, in seconds, a waiting stub looks for the prompt's Ctrl-C.
POLL = 0.2


def parse_listen_address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` (also qemu's `tcp::PORT`); loopback unless a host is named."""
    spec = text.strip()
    if spec.startswith("tcp:"):
        spec = spec[4:]
    host, sep, port = spec.rpartition(":")
    if not sep:
        host = ""
    try:
        number = int(port, 10)
    except ValueError:
        raise ValueError(f"'{text}' is not [HOST:]PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is not between 0 and 65535")
    return host.strip("[]") or "127.0.0.1", number


def _is_resume(payload: bytes) -> bool:
    """c, C, s, S and vCont;...: the packets that run the guest."""
    return payload[:1] in (b"c", b"C", b"s", b"S") or payload.startswith(b"vCont;")


class GdbServer:
    """Listen on (host, port) and serve one gdb connection against the session."""

    def __init__(self, session, host: str = "127.0.0.1", port: int = 1234, *, log=None) -> None:
        self.session = session
        self.log = log or (lambda text: None)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, port), family=family)
        self.address = self.listener.getsockname()[:2]
        self._sock: socket.socket | None = None
        self._items: queue.Queue = queue.Queue()
        self._ack = True
        self._last_sent = b""
        self._running = False  # the guest runs for a c/s packet (0x03 may stop it)
        self._resumes_pending = 0  # resume packets read and not answered yet
        self._interrupt_lock = threading.Lock()
        self.target: GdbTarget | None = None
        self._tool_dir: str | None = None
        self.tool_symbols_path: str | None = None

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        """Close the connection and stop listening (wakes a serve() waiting in accept)."""
        for sock in (self._sock, self.listener):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    # ------------------------------------------------------------------ the session
    def serve(self) -> str:
        """Wait for gdb, answer it until it detaches, kills or goes away; how it ended."""
        try:
            accepted = self._accept()
            if isinstance(accepted, str):
                return accepted
            self._sock, peer = accepted
            self._sock.settimeout(None)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.log(f"gdb connected from {peer[0]}:{peer[1]}")
            self.target = GdbTarget(self.session)
            self.target.attach()
            self._write_tool_symbols()
            threading.Thread(target=self._read_loop, name="gdbstub-reader", daemon=True).start()
            return self._serve_packets(PacketHandlers(self.target, self))
        finally:
            if self.target is not None:
                self.target.follow_machine()
                self.target.detach()
            self.close()
            if self._tool_dir is not None:
                shutil.rmtree(self._tool_dir, ignore_errors=True)

    def _write_tool_symbols(self) -> None:
        """The tool's pages as a symbol file gdb loads like a library (see toolsyms.py)."""
        kretprobes = getattr(self.session.machine.kprobes, "kretprobes", None)
        self._tool_dir = tempfile.mkdtemp(prefix="kprobe-shell-gdb-")
        path = os.path.join(self._tool_dir, "kprobe-shell-tool-pages.so")
        with open(path, "wb") as f:
            f.write(tool_symbol_file(tool_symbols(getattr(kretprobes, "booster", None))))
        self.tool_symbols_path = path

    def _accept(self):
        """(socket, peer) of gdb's connection, or why there is none: the prompt's Ctrl-C
        asks the machine to stop (the prompt runs commands in a worker thread), which
        ends the wait."""
        self.session.machine.debug.take_stop_request()
        while True:
            try:
                self.listener.settimeout(POLL)
                return self.listener.accept()
            except socket.timeout:
                if self.session.machine.debug.take_stop_request():
                    return "stopped waiting for gdb (Ctrl-C)"
            except OSError:
                return "the stub stopped listening"

    def _serve_packets(self, handlers: PacketHandlers) -> str:
        while True:
            try:
                item = self._items.get(timeout=POLL)  # gdb may think at a breakpoint for ever
            except queue.Empty:
                if self.session.machine.debug.take_stop_request():
                    return "stopped by Ctrl-C at the shell: gdb's connection is closed"
                continue
            if item is None:
                return "gdb closed the connection"
            if item.kind == "nak" and self._last_sent:
                self._send_raw(self._last_sent)
            elif item.kind in ("bad-checksum", "too-long"):
                self._send_raw(b"-")
            elif item.kind == "packet":
                if self._ack:
                    self._send_raw(b"+")
                try:
                    reply = handlers.handle(item.payload)
                except SessionEnd as end:
                    if end.reply is not None:
                        self.send(end.reply)
                    return end.reason
                finally:
                    if _is_resume(item.payload):
                        with self._interrupt_lock:
                            self._resumes_pending -= 1
                if reply is not None:
                    self.send(reply)

    def run_guest(self, work):
        """Run work() (a resume) with the 0x03 interrupt armed."""
        self._running = True
        try:
            return work()
        finally:
            with self._interrupt_lock:
                self._running = False
                self.session.machine.debug.take_stop_request()  # gdb's own 0x03 is answered: spent

    def no_ack_mode(self) -> None:
        self._ack = False

    # ------------------------------------------------------------------ the wire
    def send(self, payload: str | bytes) -> None:
        data = payload.encode("latin-1") if isinstance(payload, str) else payload
        if len(data) > PACKET_SIZE:
            raise ValueError("reply longer than the packet size")
        self._last_sent = frame(data)
        self._send_raw(self._last_sent)

    def _send_raw(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError:
            self._items.put(None)

    def _read_loop(self) -> None:
        reader = PacketReader()
        sock = self._sock
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._items.put(None)
                self._interrupt()  # a dropped connection stops a running guest too
                return
            for item in reader.feed(data):
                if item.kind == "interrupt":
                    self._interrupt()
                    continue
                if item.kind == "packet" and _is_resume(item.payload):
                    with self._interrupt_lock:
                        self._resumes_pending += 1
                self._items.put(item)

    def _interrupt(self) -> None:
        """Stop the guest that a resume packet runs, or is about to run: the 0x03 may come
        before the serving thread has begun the run (the packet is still queued), and
        run() forgets earlier stop requests.  A 0x03 with no resume outstanding means
        nothing.  The request is made under the lock that ends a run, so that a run
        never ends with gdb's request left over for the prompt's Ctrl-C check."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self._interrupt_lock:
                if not self._running and not self._resumes_pending:
                    return
                machine = self.session.machine
                if self._running and machine.running:
                    machine.request_stop()
                    return
            time.sleep(0.005)

"""The packets gdb sends and their answers (gdb's manual, "Packets" and "General Query
Packets").  Each handler gets the payload after its letter and returns the reply; an
empty reply means "not supported", as the protocol says; `Exx` is an error."""
from __future__ import annotations

import io
import os

from ..machine.layout import RESERVED_BASE
from .protocol import PACKET_SIZE, escape_binary
from .registers import REGISTERS, target_xml
from .target import TargetError

E_INVALID, E_FAULT = "E16", "E0e"  # EINVAL (22), EFAULT (14), in hex as gdbserver sends them
#: The most memory one `m` reply carries (two hex digits a byte).
MAX_READ = (PACKET_SIZE - 8) // 2


class SessionEnd(Exception):
    """The gdb session is over (D, k, vKill): reply, then close."""

    def __init__(self, reason: str, reply: str | None = "OK") -> None:
        super().__init__(reason)
        self.reason, self.reply = reason, reply


class Malformed(Exception):
    """A packet that does not parse: answered E16 (EINVAL)."""


def _hex_int(text: str) -> int:
    try:
        value = int(text, 16)
    except ValueError:
        raise Malformed(text) from None
    if value < 0 or value >= 1 << 64:
        raise Malformed(text)
    return value


def _thread_id(text: str) -> int:
    """A thread id: hex, or -1 (all threads)."""
    return -1 if text == "-1" else _hex_int(text)


def _addr_length(text: str) -> tuple[int, int]:
    addr, sep, length = text.partition(",")
    if not sep:
        raise Malformed(text)
    return _hex_int(addr), _hex_int(length)


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise Malformed(text) from None


class PacketHandlers:
    """Answers one gdb connection's packets against a GdbTarget."""

    def __init__(self, target, server) -> None:
        self.target = target
        self.server = server
        self.g_thread = 0  # Hg: whose registers g/G/p/P act on (0: the stopped CPU)
        self.c_thread = 0  # Hc: which CPU s steps
        self._table = {
            "?": lambda _a: self.target.last_stop, "g": self.read_registers, "G": self.write_registers,
            "p": self.read_register, "P": self.write_register, "m": self.read_memory, "M": self.write_memory,
            "c": self.cont, "C": self.cont_signal, "s": self.step, "S": self.step_signal,
            "Z": self.insert, "z": self.remove, "H": self.set_thread, "T": self.thread_alive,
            "D": self.detach, "k": self.kill, "q": self.query, "Q": self.set_query, "v": self.v_packet,
        }

    def handle(self, payload: bytes) -> str | None:
        text = payload.decode("latin-1")
        handler = self._table.get(text[:1])
        if handler is None:
            return ""
        try:
            return handler(text[1:])
        except (Malformed, TargetError):
            return E_INVALID
        except SessionEnd:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug of the stub or the engine: said, not fatal
            self.server.log(f"gdbstub: internal error answering '{text[:40]}': {type(exc).__name__}: {exc}")
            return "E01"

    # ------------------------------------------------------------------ registers
    def read_registers(self, _args: str) -> str:
        return "".join(r.hex() for r in self.target.read_registers(self.g_thread))

    def write_registers(self, args: str) -> str:
        data, offset = _unhex(args), 0
        for number, reg in enumerate(REGISTERS):
            if offset + reg.size > len(data):
                break
            self.target.write_register(self.g_thread, number, data[offset:offset + reg.size])
            offset += reg.size
        return "OK"

    def read_register(self, args: str) -> str:
        number = _hex_int(args)
        if number >= len(REGISTERS):
            return E_INVALID
        return self.target.read_registers(self.g_thread)[number].hex()

    def write_register(self, args: str) -> str:
        number, sep, value = args.partition("=")
        if not sep:
            raise Malformed(args)
        self.target.write_register(self.g_thread, _hex_int(number), _unhex(value))
        return "OK"

    # ------------------------------------------------------------------ memory
    def read_memory(self, args: str) -> str:
        addr, length = _addr_length(args)
        if length == 0:
            return ""
        try:
            return self.target.read_memory(addr, min(length, MAX_READ, (1 << 64) - addr)).hex()
        except TargetError:
            return E_FAULT

    def write_memory(self, args: str) -> str:
        where, sep, data = args.partition(":")
        if not sep:
            raise Malformed(args)
        addr, length = _addr_length(where)
        raw = _unhex(data)
        if len(raw) != length:
            raise Malformed(args)
        if raw:
            try:
                self.target.write_memory(addr, raw)
            except TargetError:
                return E_FAULT
        return "OK"

    # ------------------------------------------------------------------ running
    def _resume(self, step_thread: int | None, args: str) -> str:
        if args:
            self.target.write_register(step_thread or 0, 16, _hex_int(args).to_bytes(8, "little"))
        reply = self.server.run_guest(lambda: self.target.resume(step_thread))
        # gdb takes a stop reply's thread as the stub's general thread from then on
        # (remote.c's record_currthread), as gdbserver makes it.
        self.g_thread = self.target.stopped_thread
        return reply

    def cont(self, args: str) -> str:
        return self._resume(None, args)

    def cont_signal(self, args: str) -> str:
        return self._resume(None, args.partition(";")[2])  # the guest has no signals: dropped

    def step(self, args: str) -> str:
        return self._resume(self._stepping_thread(self.c_thread), args)

    def step_signal(self, args: str) -> str:
        return self._resume(self._stepping_thread(self.c_thread), args.partition(";")[2])

    def _stepping_thread(self, thread: int) -> int:
        return self.target.stopped_thread if thread in (0, -1) else thread

    def v_packet(self, args: str) -> str:
        if args == "Cont?":
            return "vCont;c;C;s;S"
        if args.startswith("Cont;"):
            return self._vcont(args[5:])
        if args.startswith("Kill"):
            self._kill("OK")
        if args == "MustReplyEmpty":
            return ""
        return ""

    def _vcont(self, args: str) -> str:
        """vCont;ACTION[:TID]...: a step action steps its CPU alone (the others stay
        stopped, as the brief of gdb's vCont allows and QEMU does); else all continue."""
        steps = []
        for action in args.split(";"):
            verb, _, thread = action.partition(":")
            if not verb or verb[0] not in "cCsSt":
                raise Malformed(action)
            if verb[0] in "sS":
                steps.append(self._stepping_thread(_thread_id(thread)) if thread else self.target.stopped_thread)
        if steps:
            self.target.cpu_of(steps[0])
            return self._resume(steps[0], "")
        return self._resume(None, "")

    # ------------------------------------------------------------------ breakpoints
    def _z_args(self, args: str) -> tuple[int, int, int]:
        parts = args.split(";")[0].split(",")
        if len(parts) != 3:
            raise Malformed(args)
        return _hex_int(parts[0]), _hex_int(parts[1]), _hex_int(parts[2])

    def insert(self, args: str) -> str:
        kind, addr, length = self._z_args(args)
        try:
            self.target.insert(kind, addr, length)
        except NotImplementedError:
            return ""
        return "OK"

    def remove(self, args: str) -> str:
        kind, addr, length = self._z_args(args)
        try:
            self.target.remove(kind, addr, length)
        except NotImplementedError:
            return ""
        return "OK"

    # ------------------------------------------------------------------ threads, detach
    def set_thread(self, args: str) -> str:
        op, thread = args[:1], _thread_id(args[1:]) if args[1:] else 0
        if op not in ("g", "c"):
            raise Malformed(args)
        if thread not in (0, -1):
            self.target.cpu_of(thread)  # TargetError for a thread that does not exist
        if op == "g":
            self.g_thread = thread
        else:
            self.c_thread = thread
        return "OK"

    def thread_alive(self, args: str) -> str:
        return "OK" if _thread_id(args) in self.target.threads() else "E01"

    def detach(self, _args: str) -> str:
        raise SessionEnd("gdb detached")

    def kill(self, _args: str) -> str:
        """k: the guest is killed, as qemu's is: here the shell gets a fresh machine."""
        self._kill(None)

    def _kill(self, reply: str | None) -> None:
        session = self.target.session
        for failure in session.replace_machine(session.image_path, keep_probes=True):
            session.out.error(failure)
        raise SessionEnd("gdb killed the guest: a fresh machine from the same image (probes kept)", reply)

    # ------------------------------------------------------------------ queries
    def query(self, args: str) -> str:
        name, _, rest = args.partition(":")
        if name == "Supported":
            return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;qXfer:exec-file:read+;qXfer:libraries:read+;"
                    "QStartNoAckMode+;swbreak+;hwbreak+;vContSupported+")
        if name == "Xfer":
            return self._xfer(rest)
        simple = {"C": f"QC{self.target.stopped_thread:x}", "Attached": "1", "fThreadInfo": self._thread_list(),
                  "sThreadInfo": "l", "Symbol": "OK", "Offsets": "", "TStatus": ""}
        if name in simple:
            return simple[name]
        if name.startswith("ThreadExtraInfo,"):
            return self.target.thread_extra_info(_thread_id(name.split(",", 1)[1])).encode().hex()
        if name.startswith("Rcmd,"):
            return self.monitor(_unhex(name[5:]).decode("utf-8", errors="replace"))
        return ""

    def _thread_list(self) -> str:
        return "m" + ",".join(f"{t:x}" for t in self.target.threads())

    def set_query(self, args: str) -> str:
        if args == "StartNoAckMode":
            self.server.send("OK")
            self.server.no_ack_mode()
            return None
        return ""

    def _xfer(self, args: str) -> str:
        """qXfer:OBJECT:read:ANNEX:OFFSET,LENGTH -> `m` (more) or `l` (last) + data."""
        parts = args.split(":")
        if len(parts) != 4 or parts[1] != "read":
            return ""
        obj, annex, span = parts[0], parts[2], parts[3]
        offset, length = _addr_length(span)
        if obj == "features":
            if annex != "target.xml":
                return "E00"
            data = target_xml().encode()
        elif obj == "exec-file":
            data = os.path.abspath(self.target.session.image_path).encode()
        elif obj == "libraries" and self.server.tool_symbols_path:
            data = (f'<library-list><library name="{self.server.tool_symbols_path}">'
                    f'<segment address="0x{RESERVED_BASE:x}"/></library></library-list>').encode()
        else:
            return ""
        chunk = data[offset:offset + min(length, MAX_READ)]
        return ("l" if offset + len(chunk) >= len(data) else "m") + escape_binary(chunk).decode("latin-1")

    # ------------------------------------------------------------------ monitor
    def monitor(self, line: str) -> str:
        """qRcmd: run a shell command; its output comes back as O packets, then OK."""
        from ..shell.output import Output
        from ..shell.registry import CommandError

        session = self.target.session
        buffer = io.StringIO()
        saved, session.out = session.out, Output(buffer, color=False)
        try:
            word = line.strip().split(" ", 1)[0]
            if word in ("gdbserver", "quit", "q", "exit"):
                raise CommandError(f"'{word}' cannot run from gdb's monitor (detach first)")
            session.execute(line)
        except CommandError as exc:
            session.out.print(f"error: {exc}")
        except Exception as exc:  # noqa: BLE001 - a shell bug is reported, never fatal here
            session.out.print(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            session.out.flush()
            session.out = saved
        self.target.follow_machine()
        text = buffer.getvalue().encode()
        step = MAX_READ - 1
        for start in range(0, len(text), step):
            self.server.send("O" + text[start:start + step].hex())
        return "OK"


"""The remote serial protocol's framing: `$payload#cs` packets, acks, the 0x03 interrupt.

gdb's manual, "Overview" of the remote protocol: a packet is `$`, the payload, `#` and two
hex digits of the payload's checksum (the sum of its bytes modulo 256); the receiver
answers `+` (good) or `-` (send it again) until both sides agree to drop acks
(QStartNoAckMode).  A lone 0x03 byte outside a packet is the interrupt (Ctrl-C).  In a
payload `}` escapes the next byte (xor 0x20); `$`, `#`, `}` and `*` must be escaped in
binary data.
"""
from __future__ import annotations

from dataclasses import dataclass

#: The largest packet we accept or send (advertised as PacketSize in qSupported).
PACKET_SIZE = 0x4000
INTERRUPT = 0x03
_ESCAPED = frozenset(b"$#}*")


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def frame(payload: bytes) -> bytes:
    """A packet on the wire: `$payload#cs`."""
    return b"$" + payload + b"#" + b"%02x" % checksum(payload)


def escape_binary(data: bytes) -> bytes:
    """Binary data in a reply (qXfer): the four special bytes as `}` and the byte xor 0x20."""
    out = bytearray()
    for byte in data:
        if byte in _ESCAPED:
            out += bytes((0x7D, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def unescape_binary(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for byte in it:
        if byte == 0x7D:
            byte = next(it, 0x20) ^ 0x20
        out.append(byte)
    return bytes(out)


@dataclass
class Received:
    """One thing read from the wire: a packet (payload, checksum good or not), an ack or
    nak, the interrupt byte, or a packet too long to keep."""

    kind: str  # "packet", "bad-checksum", "too-long", "ack", "nak", "interrupt"
    payload: bytes = b""


class PacketReader:
    """Turns the byte stream into Received items, however the bytes arrive (one at a time,
    several packets at once).  Bytes outside a packet that mean nothing are skipped, as gdb
    does; a packet longer than max_size is given up (the sender is answered `-`)."""

    def __init__(self, max_size: int = PACKET_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._in_packet = False
        self._skipping = False  # inside a too-long packet: drop bytes until its '#xx'

    def feed(self, data: bytes) -> list[Received]:
        out: list[Received] = []
        for byte in data:
            item = self._byte(byte)
            if item is not None:
                out.append(item)
        return out

    def _byte(self, byte: int) -> Received | None:
        if not self._in_packet:
            if byte == ord("$"):
                self._in_packet, self._buf = True, bytearray()
                return None
            return {ord("+"): Received("ack"), ord("-"): Received("nak"),
                    INTERRUPT: Received("interrupt")}.get(byte)
        self._buf.append(byte)
        hash_at = len(self._buf) - 3
        if hash_at >= 0 and self._buf[hash_at] == ord("#") and not self._escaped(hash_at):
            return self._finish(hash_at)
        if len(self._buf) > self.max_size + 3 and not self._skipping:
            self._skipping = True
            self._buf = self._buf[-3:]
            return Received("too-long")
        if self._skipping and len(self._buf) > 3:
            del self._buf[:-3]
        return None

    def _escaped(self, index: int) -> bool:
        """Is the byte at index preceded by an escaping `}` (itself not escaped)?"""
        run = 0
        while index - run - 1 >= 0 and self._buf[index - run - 1] == 0x7D:
            run += 1
        return run % 2 == 1

    def _finish(self, hash_at: int) -> Received | None:
        payload, digits = bytes(self._buf[:hash_at]), bytes(self._buf[hash_at + 1:])
        self._in_packet, self._buf = False, bytearray()
        if self._skipping:
            self._skipping = False
            return None
        try:
            good = int(digits, 16) == checksum(payload)
        except ValueError:
            good = False
        return Received("packet" if good else "bad-checksum", payload)

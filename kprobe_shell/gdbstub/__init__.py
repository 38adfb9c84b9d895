"""A gdb remote serial protocol stub: gdb attaches to the emulated machine (`target remote`),
as it attaches to QEMU's `-gdb tcp::1234`, with the probe engine live.

    protocol.py   packet framing: checksums, acks, escapes, the 0x03 interrupt
    registers.py  the register file gdb expects for i386:x86-64 and target.xml
    target.py     the machine as gdb's target: CPUs as threads, breakpoints, watchpoints, runs
    packets.py    one handler per packet; `monitor` runs shell commands
    toolsyms.py   a symbol file naming the tool's pages (kretprobe_trampoline, slots) for gdb
    server.py     the socket, the reader thread, the serving loop
"""
from .server import GdbServer, parse_listen_address

__all__ = ["GdbServer", "parse_listen_address"]

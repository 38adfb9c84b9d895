"""Devices: the serial console (COM1) and the port I/O the guest does (in/out)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_INSN, Uc
from unicorn import x86_const as X

from .layout import SERIAL_LSR, SERIAL_PORT, SMP_STARTUP_PORT

if TYPE_CHECKING:
    from .machine import Machine
    from .smp import Cpu


class Console:
    """The serial port: bytes written to COM1 are the guest's console."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._line = bytearray()
        #: Called with each complete line (bytes, newline included) as the guest writes it.
        self.line_listeners: list[Callable[[bytes], None]] = []

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def write_byte(self, value: int) -> None:
        self.data.append(value)
        self._line.append(value)
        if value == 0x0A:
            line, self._line = bytes(self._line), bytearray()
            for listener in self.line_listeners:
                listener(line)

    def flush_partial(self) -> bytes:
        """The unterminated tail, handed out once (when the guest stops)."""
        line, self._line = bytes(self._line), bytearray()
        if line:
            for listener in self.line_listeners:
                listener(line)
        return line


class Ports:
    """The I/O ports: COM1's transmit and line status registers, and the machine's SMP
    start-up port (the number of CPUs in, a start-up IPI out)."""

    def __init__(self, machine: "Machine", console: Console) -> None:
        self.machine = machine
        self.console = console
        #: The block of the last in/out instruction, and how many came before it in that block.
        self._io_block: tuple[int, int, int] | None = None
        self._io_index = 0

    def install(self, cpu: "Cpu") -> None:
        cpu.uc.hook_add(UC_HOOK_INSN, self.on_out, None, 1, 0, X.UC_X86_INS_OUT)
        cpu.uc.hook_add(UC_HOOK_INSN, self.on_in, None, 1, 0, X.UC_X86_INS_IN)

    def on_out(self, uc: Uc, port: int, size: int, value: int, user_data) -> None:
        self._note_io()
        if port == SERIAL_PORT:
            self.console.write_byte(value & 0xFF)
        elif port == SMP_STARTUP_PORT and size == 4:
            self.machine.smp.start_secondary(value & 0xFFFFFFFF, self.clock_at_io())

    def on_in(self, uc: Uc, port: int, size: int, user_data) -> int:
        self._note_io()
        if port == SERIAL_LSR:
            return 0x60  # transmitter empty: the guest may always send
        if port == SMP_STARTUP_PORT:
            return self.machine.ncpus  # how many CPUs the machine has (the MP table, in short)
        return 0xFF

    def _note_io(self) -> None:
        """Count the in/out instructions of the block being run, for clock_at_io."""
        ic = self.machine.clock.counter
        block = (ic.blk_addr, ic.blk_end, ic.blk_base)
        if block == self._io_block:
            self._io_index += 1
        else:
            self._io_block, self._io_index = block, 0

    def clock_at_io(self) -> int:
        """The exact count at the in/out instruction being run.  unicorn does not bring rip
        up to date for an I/O hook (only code hooks and faults do), so it is found as the
        n-th in/out of the block the clock counted whole (see _note_io)."""
        clock = self.machine.clock
        ic = clock.counter
        if ic.blk_end and self._io_block == (ic.blk_addr, ic.blk_end, ic.blk_base):
            seen = 0
            for index, (_a, mnemonic) in enumerate(clock.block_instructions(ic.blk_addr, ic.blk_end)):
                if mnemonic in ("in", "out"):
                    if seen == self._io_index:
                        return ic.blk_base + index + 1
                    seen += 1
        return ic.retired  # not in the block (a probed in/out stepped in its slot): exact already

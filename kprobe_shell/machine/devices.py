"""Devices: the serial console (COM1) and the port I/O the guest does (in/out)."""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_INSN, Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from .clock import OUT_HOOK_ADDRESS
from .events import MachineError
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
        self._on_out = self.on_out  # the C hook holds a borrowed reference

    def install(self, cpu: "Cpu") -> None:
        """`out` goes to the clock's C hook, which notes it (see _note_io) and calls
        on_out for the ports that do something: an `out` to any other port (the
        interrupt controller's end-of-interrupt at every tick) costs no host transition."""
        ic = cpu.icount
        ic.out_py = id(self._on_out)
        ic.out_ports[0], ic.out_ports[1] = SERIAL_PORT, SMP_STARTUP_PORT
        handle = ctypes.c_size_t()
        err = uclib.uc_hook_add(cpu.uc._uch, ctypes.byref(handle), UC_HOOK_INSN, ctypes.c_void_p(OUT_HOOK_ADDRESS),
                                ctypes.cast(ctypes.pointer(ic), ctypes.c_void_p), ctypes.c_uint64(1),
                                ctypes.c_uint64(0), ctypes.c_int(X.UC_X86_INS_OUT))
        if err:
            raise MachineError(f"could not install the port I/O hook (unicorn error {err})")
        cpu.uc.hook_add(UC_HOOK_INSN, self.on_in, None, 1, 0, X.UC_X86_INS_IN)

    def on_out(self, port: int, size: int, value: int) -> None:
        """An `out` to the serial port or the SMP start-up port (from the C hook, which
        noted it already)."""
        try:
            if port == SERIAL_PORT:
                self.console.write_byte(value & 0xFF)
            elif port == SMP_STARTUP_PORT and size == 4:
                self.machine.smp.start_secondary(value & 0xFFFFFFFF, self.clock_at_io())
        except BaseException as exc:  # noqa: BLE001 - stop the guest, run() raises it
            self.machine.hook_failed(exc)

    def on_in(self, uc: Uc, port: int, size: int, user_data) -> int:
        self._note_io()
        if port == SERIAL_LSR:
            return 0x60  # transmitter empty: the guest may always send
        if port == SMP_STARTUP_PORT:
            return self.machine.ncpus  # how many CPUs the machine has (the MP table, in short)
        return 0xFF

    def _note_io(self) -> None:
        """Count the in/out instructions of the block being run, for clock_at_io (the
        clock's out hook does the same for `out`, in the same fields: note_io in _clock.c)."""
        ic = self.machine.clock.counter
        if ic.io_seen and (ic.io_blk_addr, ic.io_blk_end, ic.io_blk_base) == (ic.blk_addr, ic.blk_end, ic.blk_base):
            ic.io_index += 1
        else:
            ic.io_seen, ic.io_index = 1, 0
            ic.io_blk_addr, ic.io_blk_end, ic.io_blk_base = ic.blk_addr, ic.blk_end, ic.blk_base

    def clock_at_io(self) -> int:
        """The exact count at the in/out instruction being run.  unicorn does not bring rip
        up to date for an I/O hook (only code hooks and faults do), so it is found as the
        n-th in/out of the block the clock counted whole (see _note_io)."""
        clock = self.machine.clock
        ic = clock.counter
        if ic.blk_end and ic.io_seen and (ic.io_blk_addr, ic.io_blk_end, ic.io_blk_base) == (
                ic.blk_addr, ic.blk_end, ic.blk_base):
            seen = 0
            for index, (_a, mnemonic) in enumerate(clock.block_instructions(ic.blk_addr, ic.blk_end)):
                if mnemonic in ("in", "out"):
                    if seen == ic.io_index:
                        return ic.blk_base + index + 1
                    seen += 1
        return ic.retired  # not in the block (a probed in/out stepped in its slot): exact already

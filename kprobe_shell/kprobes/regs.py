"""struct pt_regs as handlers see it: the trapped CPU's registers, readable and writable.

One live view per engine: reading `regs.rax` reads the vCPU now, writing it changes what
the guest resumes with.  ftrace's short names (di, si, ax, ip, sp, flags) work too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..machine import capi
from ..machine.registers import GENERAL_REGISTERS, REGISTERS

if TYPE_CHECKING:
    from ..machine import Machine, Task

#: ftrace/pt_regs short names -> the 64-bit register.
ALIASES = {
    "ax": "rax", "bx": "rbx", "cx": "rcx", "dx": "rdx", "si": "rsi", "di": "rdi",
    "bp": "rbp", "sp": "rsp", "ip": "rip", "flags": "eflags", "rflags": "eflags",
}


def canonical_register(name: str) -> str | None:
    name = name.lower().lstrip("%")
    name = ALIASES.get(name, name)
    return name if name in REGISTERS else None


#: The spellings handlers write most (regs.rdi, regs.ax), straight to unicorn's register
#: id: a register read is on the hot path of nearly every handler.
_READABLE = dict(REGISTERS)
_READABLE.update((alias, REGISTERS[name]) for alias, name in ALIASES.items())
_RIP_ID = REGISTERS["rip"]


class RegisterWriteError(ValueError):
    """A handler wrote a register value the guest cannot go on with; the write is refused
    (the register keeps its value) and the handler fails with this error, charged to its
    probe like any handler error."""


_SEGMENT_REGISTERS = frozenset({"cs", "ss", "ds", "es", "fs", "gs"})
_CHECKED_WRITES = _SEGMENT_REGISTERS | {"rip", "rsp"}


def check_register_write(machine: "Machine", reg: str, value: int) -> None:
    """Refuse nonsense: rip outside executable memory, rsp outside mapped memory, or a
    segment selector (the machine's GDT is fixed; a wrong selector wedges the CPU)."""
    if reg in _SEGMENT_REGISTERS:
        raise RegisterWriteError(f"{reg} is a segment selector: handlers may not change it (refused)")
    if reg == "rip":
        from ..machine.layout import INSN_SLOT_BASE, INSN_SLOT_END, PAGE_SIZE, STUB_PAGE

        tool_code = (STUB_PAGE <= value < STUB_PAGE + PAGE_SIZE
                     or INSN_SLOT_BASE <= value < INSN_SLOT_END and machine.is_mapped(value))
        if not (machine.image.is_text(value) or tool_code):
            raise RegisterWriteError(f"rip = 0x{value:x} is not executable memory of the guest (refused)")
    elif reg == "rsp":
        if value < 8 or not machine.is_mapped(value - 8, 16):
            raise RegisterWriteError(f"rsp = 0x{value:x} is not mapped stack memory (refused)")


class PtRegs:
    __slots__ = ("_machine", "shown_ip")

    def __init__(self, machine: "Machine"):
        object.__setattr__(self, "_machine", machine)
        #: shown_ip[0]: what handlers read as rip while the CPU is elsewhere (None: the
        #: CPU's rip).  A jump-optimized probe's handler runs with the CPU at the detour
        #: entry; the kernel's optimized_callback sets regs->ip = addr + 1 so that handlers
        #: see what an int3 hit shows them, and so do we, without moving the CPU.  A list,
        #: so that the hot path sets it with one store.
        object.__setattr__(self, "shown_ip", [None])

    def __getattr__(self, name: str) -> int:
        regid = _READABLE.get(name)
        if regid is None:  # another spelling (RAX, %rax), or no register at all
            reg = canonical_register(name)
            if reg is None:
                raise AttributeError(f"no register '{name}'")
            regid = REGISTERS[reg]
        if regid == _RIP_ID and self.shown_ip[0] is not None:
            return self.shown_ip[0]
        return capi.reg_read(self._machine.uch, regid)

    def __setattr__(self, name: str, value: int) -> None:
        reg = canonical_register(name)
        if reg is None:
            raise AttributeError(f"no register '{name}'")
        value = int(value) & 0xFFFFFFFFFFFFFFFF
        if reg in _CHECKED_WRITES:
            check_register_write(self._machine, reg, value)
        if reg == "rip":
            self.shown_ip[0] = None
        self._machine.set_reg(reg, value)

    def __getitem__(self, name: str) -> int:
        return self.__getattr__(name)

    def __setitem__(self, name: str, value: int) -> None:
        self.__setattr__(name, value)

    def as_dict(self) -> dict[str, int]:
        regs = self._machine.registers()
        if self.shown_ip[0] is not None:
            regs["rip"] = self.shown_ip[0]
        return regs

    def __repr__(self) -> str:
        regs = self.as_dict()
        return "PtRegs(" + ", ".join(f"{n}=0x{regs[n]:x}" for n in GENERAL_REGISTERS) + ")"

    # Helpers a handler wants next to the registers.
    @property
    def machine(self) -> "Machine":
        return self._machine

    @property
    def task(self) -> "Task | None":
        """The current task (comm, pid, address)."""
        return self._machine.tasks.current()

    def read(self, addr: int, size: int) -> bytes:
        return self._machine.read(addr, size)

    def read_u64(self, addr: int) -> int:
        return self._machine.read_u64(addr)

    def read_string(self, addr: int, limit: int = 256) -> str:
        return self._machine.read_cstring(addr, limit).decode("utf-8", errors="replace")

    def write(self, addr: int, data: bytes) -> None:
        self._machine.write(addr, data)

    def arg(self, n: int) -> int:
        """The nth (1-based) integer argument at function entry, by the x86_64 ABI."""
        if n < 1:
            raise ValueError("arguments count from 1")
        if n <= 6:
            return self._machine.reg(("rdi", "rsi", "rdx", "rcx", "r8", "r9")[n - 1])
        return self._machine.read_u64(self._machine.reg("rsp") + 8 * (n - 6))

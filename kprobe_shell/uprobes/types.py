"""The objects of uprobes (include/linux/uprobes.h): consumers, the probe they share, the
per-task state and its return instances."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..kprobes.types import ProbeError

if TYPE_CHECKING:
    from ..kprobes.x86 import DecodedInsn
    from .program import ProbedProgram

#: The breakpoint (UPROBE_SWBP_INSN) and the size of one out-of-line slot
#: (UPROBE_XOL_SLOT_BYTES).
UPROBE_SWBP_INSN = 0xCC
UPROBE_XOL_SLOT_BYTES = 128
#: kernel/events/uprobes.c: a task keeps at most this many return instances; a deeper
#: call is not hijacked ("omit uretprobe due to uretprobe_depth limit").
MAX_URETPROBE_DEPTH = 64


class UprobeError(ProbeError):
    """A uprobe that cannot be placed: the reason is the message."""


@dataclass(eq=False)
class Uprobe:
    """A consumer (struct uprobe_consumer) of the probe at PATH:OFFSET.

    `offset` is a file offset, as ftrace's uprobe_events takes it; or `symbol_name`
    (+ `symbol_offset`) names the place, as perf probe does.  handler(up, regs) runs at
    each hit, before the probed instruction (regs.rip is the probed address)."""

    path: str
    offset: int | None = None
    symbol_name: str | None = None
    symbol_offset: int = 0
    handler: Callable | None = None
    name: str = ""
    hits: int = 0
    nmissed: int = 0  # uretprobes' omitted returns (a uprobe misses nothing)
    faults: int = 0
    disabled: bool = False
    number: int | None = None  # the shell's probe number
    #: Filled at registration: the program, the probed vaddr, the instruction there.
    program: "ProbedProgram | None" = field(default=None, repr=False)
    vaddr: int = 0
    internal = False

    @property
    def owner(self) -> "Uprobe":
        return self

    @property
    def mode(self) -> str:
        return "uprobe"

    @property
    def where(self) -> str:
        """PATH:0xOFFSET, as uprobe_events lists the probe."""
        return f"{self.path}:0x{self.offset or 0:x}"

    def __repr__(self) -> str:
        kind = "uretprobe" if isinstance(self, Uretprobe) else "uprobe"
        label = self.name or (f"{self.symbol_name}+0x{self.symbol_offset:x}" if self.symbol_name else self.where)
        return f"<{kind} {label}>"


@dataclass(eq=False, repr=False)
class Uretprobe(Uprobe):
    """A return probe: handler(ri, regs) runs when the function returns (regs.rip is the
    return address, regs.rax the value); entry_handler(ri, regs), if any, at the call.
    maxactive caps this probe's return instances per task (Linux has no such cap: only
    MAX_URETPROBE_DEPTH per task, which is the default); an entry past it is nmissed."""

    entry_handler: Callable | None = None
    maxactive: int = MAX_URETPROBE_DEPTH


@dataclass(eq=False)
class UprobeEntry:
    """struct uprobe: one per (program, vaddr), shared by its consumers."""

    program: "ProbedProgram"
    vaddr: int
    insn: "DecodedInsn"
    consumers: list[Uprobe] = field(default_factory=list)

    @property
    def has_ret(self) -> bool:
        return any(isinstance(c, Uretprobe) for c in self.consumers)


@dataclass(eq=False)
class ReturnInstance:
    """struct return_instance: one hijacked return address of a task."""

    entry: UprobeEntry
    func: int             # the probed address (ri->func)
    stack: int            # rsp at the hit: the slot that holds the trampoline (ri->stack)
    orig_ret_vaddr: int   # where the function really returns to
    chained: bool         # the return address was the trampoline already (a tail call)
    pid: int = 0
    comm: str = ""

    @property
    def ret_addr(self) -> int:
        return self.orig_ret_vaddr


class UtaskState(enum.Enum):
    """enum uprobe_task_state."""

    RUNNING = "running"
    SSTEP = "single-stepping out of line"


@dataclass(eq=False)
class UprobeTask:
    """struct uprobe_task: the per-task state (created on a task's first hit)."""

    task: int               # the task_struct
    pid: int
    comm: str
    state: UtaskState = UtaskState.RUNNING
    active: UprobeEntry | None = None
    vaddr: int = 0          # the probed address being stepped
    xol_vaddr: int = 0      # the slot it is stepped in
    saved_tf: bool = False  # TF as the program had it (autask.saved_tf)
    saved_scratch: tuple[str, int] | None = None  # riprel_pre_xol's register and its value
    rcx_before: int | None = None  # a rep string instruction's count before the step
    return_instances: list[ReturnInstance] = field(default_factory=list)  # innermost last

    @property
    def depth(self) -> int:
        return len(self.return_instances)

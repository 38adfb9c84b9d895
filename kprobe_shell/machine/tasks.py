"""Guest tasks, read from the guest's own structures (never cached across runs).

The bundled kernel exports `task_struct_layout` (offsetof() of each field the host reads),
links every live task from `init_task` through `next_task`, and keeps `current` in its
per-CPU data area (`cpu_pda[cpu].pcurrent`, reached through GS_BASE as Linux 2.6 x86_64
does with %gs:pcurrent).  An image without these runs as one pseudo-task named after
the image.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .layout import STUB_PAGE

if TYPE_CHECKING:
    from .machine import Machine

#: Where the pseudo task of a task-less image "lives": a stable key for per-task tables.
PSEUDO_TASK_ADDR = STUB_PAGE + 0x800

#: TASK_COMM_LEN: task_struct.comm, NUL-padded.
TASK_COMM_LEN = 16


def _comm(raw: bytes, off: int) -> str:
    """task_struct.comm out of raw bytes, starting at off."""
    return raw[off : off + TASK_COMM_LEN].split(b"\0", 1)[0].decode("latin-1")


STATE_NAMES = {0: "R", 1: "S", 2: "D", 4: "T", 16: "Z", 32: "X"}
STATE_WORDS = {0: "running", 1: "sleeping", 2: "disk-sleep", 4: "stopped", 16: "zombie", 32: "dead"}

_LAYOUT_FIELDS = (
    "size", "off_pid", "off_comm", "off_state", "off_stack", "off_parent",
    "off_next_task", "off_exit_code", "off_cpu", "stack_size",
)


@dataclass(frozen=True)
class Task:
    address: int  # the task_struct pointer, the key of kretprobe_inst_table
    pid: int
    comm: str
    state: int
    parent_pid: int | None = None
    cpu: int = 0
    stack: int = 0

    @property
    def state_letter(self) -> str:
        return STATE_NAMES.get(self.state, "?")

    @property
    def state_word(self) -> str:
        return STATE_WORDS.get(self.state, f"state {self.state}")

    @property
    def label(self) -> str:
        """ftrace's "comm-pid"."""
        return f"{self.comm}-{self.pid}"


class TaskView:
    """Reads tasks out of guest memory on demand."""

    def __init__(self, machine: "Machine"):
        self.machine = machine
        syms = machine.image.symbols
        layout_sym = syms.get("task_struct_layout")
        self._init_task = syms.get("init_task")
        self._pda = syms.get("cpu_pda")
        self.layout: dict[str, int] | None = None
        if layout_sym is not None and self._init_task is not None and self._pda is not None:
            raw = machine.read(layout_sym.address, 4 * len(_LAYOUT_FIELDS))
            self.layout = dict(zip(_LAYOUT_FIELDS, struct.unpack(f"<{len(_LAYOUT_FIELDS)}I", raw)))
        self.pseudo = Task(PSEUDO_TASK_ADDR, 1, machine.image.name[:15], 0)

    @property
    def has_kernel_tasks(self) -> bool:
        return self.layout is not None

    def current_address(self) -> int:
        """The current task_struct pointer (cheap: one register and one 8-byte read)."""
        if self.layout is None:
            return PSEUDO_TASK_ADDR
        try:
            return self.machine.read_u64_at_reg("gs_base", 0)
        except Exception:  # noqa: BLE001 - no per-CPU area yet: no current task
            return 0

    def current(self) -> Task | None:
        if self.layout is None:
            return self.pseudo
        addr = self.current_address()
        if not addr:
            return None
        return self.read_task(addr)

    def current_comm_pid(self) -> tuple[str, int] | None:
        """The current task's comm and pid, all a trace line names: one read of the bytes
        that hold them (a whole read_task costs several times more, and this runs on every
        traced hit).  None when there is no current task."""
        lay = self.layout
        if lay is None:
            return self.pseudo.comm, self.pseudo.pid
        addr = self.current_address()
        if not addr:
            return None
        lo, hi = self._comm_pid_span
        try:
            raw = self.machine.read(addr + lo, hi - lo)
        except Exception:  # noqa: BLE001 - not mapped: no task there
            return None
        pid = int.from_bytes(raw[lay["off_pid"] - lo : lay["off_pid"] - lo + 4], "little", signed=True)
        return _comm(raw, lay["off_comm"] - lo), pid

    @functools.cached_property
    def _comm_pid_span(self) -> tuple[int, int]:
        lay = self.layout
        return min(lay["off_comm"], lay["off_pid"]), max(lay["off_comm"] + TASK_COMM_LEN, lay["off_pid"] + 4)

    def read_task(self, addr: int) -> Task | None:
        lay = self.layout
        if lay is None:
            return self.pseudo if addr == PSEUDO_TASK_ADDR else None
        try:
            raw = self.machine.read(addr, lay["size"])
        except Exception:
            return None

        def word(off: int, fmt: str = "<q") -> int:
            return struct.unpack_from(fmt, raw, off)[0]

        comm = _comm(raw, lay["off_comm"])
        parent = word(lay["off_parent"], "<Q")
        parent_pid = None
        if parent:
            try:
                parent_pid = struct.unpack("<i", self.machine.read(parent + lay["off_pid"], 4))[0]
            except Exception:
                parent_pid = None
        return Task(
            address=addr,
            pid=word(lay["off_pid"], "<i"),
            comm=comm,
            state=word(lay["off_state"]),
            parent_pid=parent_pid,
            cpu=word(lay["off_cpu"], "<i"),
            stack=word(lay["off_stack"], "<Q"),
        )

    def all(self) -> list[Task]:
        """Every live task, from init_task along next_task."""
        if self.layout is None:
            return [self.pseudo]
        tasks, addr, seen = [], self._init_task.address, set()
        while addr and addr not in seen and len(tasks) < 4096:
            seen.add(addr)
            task = self.read_task(addr)
            if task is None:
                break
            tasks.append(task)
            addr = self.machine.read_u64(addr + self.layout["off_next_task"])
        return tasks

    def exists(self, addr: int) -> bool:
        return any(t.address == addr for t in self.all())

"""The emulated x86_64 computer: vCPUs on unicorn, memory, console, clock and timer.

The machine knows nothing about probes.  It reports traps (int3, the debug trap) to
whoever registered for them, offers exact single-address code hooks, and runs the guest
until something stops it: `hlt` with interrupts off, an instruction budget, a request
from another thread (Ctrl-C), a fault, or a stop asked for by a trap handler.

Speed: no hook runs on every guest instruction.  The clock counts the image's text a
translated block at a time (a C block hook, see _icount.c) and the tool's own pages an
instruction at a time (a C code hook that also dispatches to the probe engine's callbacks
on the tool's code); everything else is an exact-address hook or a trap.
Register and memory access goes through small C accessors (unicorn's Python binding
costs microseconds per call); they act on the current CPU's unicorn instance.

SMP (`cpus=N`): one unicorn instance per CPU (unicorn has no multi-CPU mode: a `uc_engine`
is one QEMU vCPU), all mapping the same host buffers with `mem_map_ptr`, so a store by one
CPU is seen by every other at once.  What is per instance and must be kept coherent by hand
is the translation cache: every write to code (an int3 planted, a slot filled) drops the
translated blocks on every CPU.  The CPUs run in turn, a fixed quantum of instructions each
by their own instruction clocks (round robin, CPU 0 first), so a run is deterministic: the
interleaving depends only on the quantum, the timer period and the guest.  Each CPU has its
own registers (so its own GS_BASE, per-CPU data area and `current`), its own IDTR, its own
clock and its own local timer.  Each CPU's clock hook has its own state (counter, deadline)
but shares the detour byte map and the tool-code callbacks, and every hook is installed on
every CPU.  With one CPU nothing of this is in the way: the single instance maps memory as
it always did and runs without a quantum.
"""
from __future__ import annotations

import ctypes
import enum
import mmap
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable

from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_PROT,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import x86_const as X
from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone import _cs as _capstone_lib
from unicorn.unicorn_py3.unicorn import uclib

from . import _icount
from .image import Image
from .layout import (
    BOOT_STACK_BASE,
    BOOT_STACK_TOP,
    EFLAGS_IF,
    EFLAGS_TF,
    GDT_ADDR,
    GDT_ENTRIES,
    KERNEL_CS,
    KERNEL_DS,
    PAGE_SIZE,
    RESERVED_BASE,
    RESERVED_END,
    MAX_CPUS,
    SERIAL_LSR,
    SERIAL_PORT,
    SMP_QUANTUM,
    SMP_STARTUP_PORT,
    TIMER_VECTOR,
)
from .tasks import TaskView
from .userspace import DEFAULT_RAM_SIZE, Program, UserSpace, UserSpaceError

#: Register names as handlers and the shell use them -> unicorn ids.
REGISTERS = {
    "rax": X.UC_X86_REG_RAX, "rbx": X.UC_X86_REG_RBX, "rcx": X.UC_X86_REG_RCX,
    "rdx": X.UC_X86_REG_RDX, "rsi": X.UC_X86_REG_RSI, "rdi": X.UC_X86_REG_RDI,
    "rbp": X.UC_X86_REG_RBP, "rsp": X.UC_X86_REG_RSP, "r8": X.UC_X86_REG_R8,
    "r9": X.UC_X86_REG_R9, "r10": X.UC_X86_REG_R10, "r11": X.UC_X86_REG_R11,
    "r12": X.UC_X86_REG_R12, "r13": X.UC_X86_REG_R13, "r14": X.UC_X86_REG_R14,
    "r15": X.UC_X86_REG_R15, "rip": X.UC_X86_REG_RIP, "eflags": X.UC_X86_REG_EFLAGS,
    "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS, "ds": X.UC_X86_REG_DS,
    "es": X.UC_X86_REG_ES, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS,
    "fs_base": X.UC_X86_REG_FS_BASE, "gs_base": X.UC_X86_REG_GS_BASE,
}
#: The general registers, in the order `regs` and pt_regs dumps show them.
GENERAL_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags",
)

#: Exception vectors reported by name, as the kernel's traps.c does.
FAULT_NAMES = {
    0: "divide error (#DE)", 1: "debug (#DB)", 3: "int3 (#BP)", 4: "overflow (#OF)",
    5: "bounds (#BR)", 6: "invalid opcode (#UD)", 7: "device not available (#NM)",
    8: "double fault (#DF)", 10: "invalid TSS (#TS)", 11: "segment not present (#NP)",
    12: "stack segment (#SS)", 13: "general protection (#GP)", 14: "page fault (#PF)",
    16: "x87 floating point (#MF)", 17: "alignment check (#AC)", 19: "SIMD floating point (#XM)",
}

#: Virtual CPU speed: one retired instruction is one nanosecond of guest time.
NS_PER_INSN = 1


class StopReason(enum.Enum):
    HALTED = "halted"            # hlt with interrupts off: the guest is done
    BUDGET = "budget"            # the instruction budget of this run is used up
    INTERRUPTED = "interrupted"  # request_stop() (Ctrl-C) from another thread
    FAULT = "fault"              # the guest faulted (unmapped access, #UD, #DE, ...)
    BREAKPOINT = "breakpoint"    # a trap handler asked to stop (shell breakpoint)
    BUG = "bug"                  # a kernel BUG(): an invariant of the probe mechanism broke
    HANDLER = "handler"          # a probe handler failed and the policy is to stop


@dataclass
class StopEvent:
    reason: StopReason
    rip: int
    message: str = ""
    fault_address: int | None = None
    time_ns: int = 0
    task: str = ""  # "comm-pid" of the current task when it stopped
    details: dict = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """The guest cannot go on (halted or faulted) until reset."""
        return self.reason in (StopReason.HALTED, StopReason.FAULT, StopReason.BUG)



def check_machine_config(*, timer_period: int, cpus: int, quantum: int = SMP_QUANTUM) -> None:
    """The machine's own parameters, checked before any image is read (a bad one is the
    caller's mistake, not the image's)."""
    if timer_period < 100:
        raise MachineError("the timer period must be at least 100 instructions")
    if not 1 <= cpus <= MAX_CPUS:
        raise MachineError(f"the machine has 1 to {MAX_CPUS} CPUs (asked for {cpus})")
    if quantum < 1:
        raise MachineError("the SMP quantum must be at least 1 instruction")

class MachineError(Exception):
    """A request the machine cannot honour (bad address, not stopped, ...)."""


class ProgramError(MachineError):
    """A program the machine was asked to run that it cannot (see userspace.py): the
    request is wrong, not the image."""


class _ToolHook(ctypes.Structure):
    # py: the callable's PyObject* (id()), called through the C API (see _icount.c).
    _fields_ = [("begin", ctypes.c_uint64), ("end", ctypes.c_uint64), ("cb", ctypes.c_void_p), ("py", ctypes.c_void_p)]


_MAX_TOOL_HOOKS = 4


class _ICount(ctypes.Structure):
    """struct icount in _icount.c."""

    _fields_ = [
        ("retired", ctypes.c_uint64), ("deadline", ctypes.c_uint64), ("emu_stop", ctypes.c_void_p),
        ("detour_base", ctypes.c_uint64), ("detour_size", ctypes.c_uint64), ("counted", ctypes.c_void_p),
        ("n_tool_hooks", ctypes.c_uint64), ("tool_hooks", _ToolHook * _MAX_TOOL_HOOKS),
        ("tick", ctypes.c_uint64), ("limit", ctypes.c_uint64), ("retry", ctypes.c_uint64),
        ("blk_addr", ctypes.c_uint64), ("blk_end", ctypes.c_uint64), ("blk_base", ctypes.c_uint64),
        ("blk_n", ctypes.c_uint64),
        ("split_addr", ctypes.c_uint64), ("split_size", ctypes.c_uint64),
        ("blocks", ctypes.c_void_p), ("if_may_rise", ctypes.c_uint64), ("stop_asked", ctypes.c_uint64),
        ("vmem", ctypes.c_uint64),
    ]


#: uc_cb_hookcode_t: (uc, address, size, user_data); uc_cb_hookintr_t: (uc, intno, user_data).
HOOK_CODE_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p)
HOOK_INTR_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)


_NO_DEADLINE = (1 << 64) - 1
#: _run_cpu's answers to the SMP scheduler besides a StopEvent.
_QUANTUM_OVER = None
_PARKED = object()


class CpuState(enum.Enum):
    WAIT_FOR_SIPI = "wait-for-sipi"  # an AP not started yet (the guest has not sent its startup IPI)
    ONLINE = "online"                # running, or idle in `sti; hlt` waiting for its timer
    PARKED = "parked"                # executed hlt with interrupts off: it never runs again


class Cpu:
    """One virtual CPU: its unicorn instance (registers, IDTR, GS_BASE, translation cache,
    hooks), its instruction clock and its local timer."""

    def __init__(self, index: int, uc: Uc, icount: "_ICount", state: CpuState):
        self.index = index
        self.uc = uc
        self.icount = icount
        self.state = state
        self.next_tick = 0
        self.irq_waiting = False  # its timer ticked with interrupts off: retry every IRQ_RETRY
        self.uch = uc._uch.value  # the uc_engine pointer, for the C accessors
        self.retired_addr = ctypes.addressof(icount)  # `retired` is its first field
        self.intr_cb = None  # the ctypes interrupt hook (kept alive with the CPU)

    def __repr__(self) -> str:
        return f"<Cpu {self.index} {self.state.value} at {self.icount.retired}>"
_UNTIL_NEVER = (1 << 64) - 1
_EMU_STOP_ADDR = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
# The C accessors (see _icount.c) call unicorn directly: the Python binding costs a few
# microseconds per register or memory access, more than a probe hit should.
_icount.init(*(ctypes.cast(fn, ctypes.c_void_p).value
               for fn in (uclib.uc_reg_read, uclib.uc_reg_write, uclib.uc_mem_read, uclib.uc_mem_write)))
_reg_read, _reg_write = _icount.reg_read, _icount.reg_write
_mem_read, _mem_write = _icount.mem_read, _icount.mem_write
_read_u64, _write_u64 = _icount.read_u64, _icount.write_u64
_read_u64_at_reg = _icount.read_u64_at_reg
_exchange_top_of_stack, _push_u64, _peek_u64 = _icount.exchange_top_of_stack, _icount.push_u64, _icount.peek_u64
_UcAccessError = _icount.UcAccessError

# The clock's block hook decodes each new translated block once with capstone's C
# iterator (see _icount.c): one handle and one instruction buffer for the process.
_DECODER = Cs(CS_ARCH_X86, CS_MODE_64)
_capstone_lib.cs_malloc.restype = ctypes.c_void_p
_capstone_lib.cs_malloc.argtypes = [ctypes.c_size_t]
_DECODER_INSN = _capstone_lib.cs_malloc(_DECODER.csh)  # never freed: one for the process
_icount.init_decoder(ctypes.cast(_capstone_lib.cs_disasm_iter, ctypes.c_void_p).value, _DECODER.csh.value,
                     _DECODER_INSN, X.UC_X86_REG_EFLAGS)
_BLOCK_HOOK, _TOOL_HOOK = _icount.hook_addresses()
_BLOCK_TABLE_BYTES = _icount.block_table_bytes()
#: A tick that finds interrupts off is retried this many instructions later.
IRQ_RETRY = 16
_REG_RSP = X.UC_X86_REG_RSP
_REG_RIP = X.UC_X86_REG_RIP
_REG_EFLAGS = X.UC_X86_REG_EFLAGS


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


class Machine:
    """An x86_64 computer running one guest image.

    `run()` runs the guest; trap handlers registered in `trap_handlers` are called from
    inside the run with the vector, and may change registers, write memory, or ask to stop
    with `stop_guest()`.
    """

    def __init__(self, image: Image | str, *, timer_period: int = 5000, cpus: int = 1,
                 quantum: int = SMP_QUANTUM, programs: list[Program] | None = None,
                 ram_size: int = DEFAULT_RAM_SIZE, keep_workload: bool = False) -> None:
        check_machine_config(timer_period=timer_period, cpus=cpus, quantum=quantum)
        if isinstance(image, str):
            image = Image.load(image)
        self.image = image
        self.timer_period = timer_period
        self.ncpus = cpus
        self.quantum = quantum
        self.serial = Console()
        #: vector -> callable(machine) -> bool (True: handled, carry on).
        self.trap_handlers: dict[int, Callable[["Machine"], bool]] = {}
        #: Called with (machine, trap number) on a guest fault before it is reported; True
        #: means a handler dealt with it and the guest goes on (the kprobe fault path).
        self.fault_notifier: Callable[["Machine", int], bool] | None = None
        self.last_stop: StopEvent | None = None
        self.halted = False
        self._lock = threading.Lock()
        self._stop_requested = False
        self._pending_stop: StopEvent | None = None
        self._fault: tuple[str, int | None] | None = None
        self._running = False
        self._run_thread = 0  # the thread in run() (hooks run on it)
        self._run_serial = 0  # which run(): a late fallback stop must not hit the next one
        self._code_hooks: dict[int, list[tuple[Uc, int]]] = {}
        self._next_hook_token = 1
        #: Set by end_quantum() from a trap handler (see there).
        self._end_quantum = False
        #: A hook asked unicorn to stop (see _call_code_hook).
        self._stopping = False
        #: The block of the last in/out instruction, and how many came before it in that block.
        self._io_block: tuple[int, int, int] | None = None
        self._io_index = 0
        #: Called with no arguments at the start of every run(), while the guest is still
        #: stopped (the probe engine's delayed optimizer works there).
        self.before_run: list[Callable[[], None]] = []
        #: Called with the stop event at the end of every run(), before it is returned;
        #: may move rip out of the tool's pages (and then updates event.rip).
        self.after_run: list[Callable[[StopEvent], None]] = []
        #: Functions mapping an address in the tool's pages (an instruction slot, a detour
        #: buffer) to the guest address it stands for, or None: reports show the guest's.
        self.address_translators: list[Callable[[int], int | None]] = []
        #: How often rip was written through set_reg: lets the probe engine see that a
        #: handler moved execution without reading rip back on every hit.
        self.rip_writes = 0
        self._detour_counter = None
        self._fast_hooks: list = []
        #: handle -> address of every add_code_hook hook (breakpoints, `until`, ...).
        self.hooked_addresses: dict[int, int] = {}
        #: Called with the address before add_code_hook hooks it.
        self.code_hook_watchers: list[Callable[[int], None]] = []
        #: User processes (see userspace.py): for a kernel built with CONFIG_USERSPACE.
        self.userspace: UserSpace | None = None
        #: emu_start's `until` when no deadline falls inside a block (see UserSpace.until_never).
        self._until_never = _UNTIL_NEVER
        if self.image.symbols.get("syscall_gate") is not None:
            try:
                self.userspace = UserSpace(self, programs or [], ram_size=ram_size, keep_workload=keep_workload)
            except UserSpaceError as exc:
                raise ProgramError(str(exc)) from None
        elif programs:
            raise ProgramError(f"{image.path}: this kernel cannot run programs (it was not built with CONFIG_USERSPACE)")
        self._boot()

    # ------------------------------------------------------------------ set-up
    def _boot(self) -> None:
        self._shared_ram: list[mmap.mmap] = []  # host buffers behind every CPU's memory (SMP)
        self.cpus: list[Cpu] = []
        # Instruction counts of the text's translated blocks, shared by every CPU's clock
        # (they run the same code); owned here, freed with the machine.
        self._block_table = ctypes.create_string_buffer(_BLOCK_TABLE_BYTES)
        for index in range(self.ncpus):
            uc = Uc(UC_ARCH_X86, UC_MODE_64)
            state = CpuState.ONLINE if index == 0 else CpuState.WAIT_FOR_SIPI
            icount = _ICount(0, _NO_DEADLINE, _EMU_STOP_ADDR)
            icount.tick = icount.limit = _NO_DEADLINE
            icount.blocks = ctypes.addressof(self._block_table)
            self.cpus.append(Cpu(index, uc, icount, state))
        self._switch_cpu(self.cpus[0])
        self._map_image()
        # The tool's region: GDT + stub page, slot pages (mapped on demand), boot stack.
        self._map(RESERVED_BASE, 2 * PAGE_SIZE, UC_PROT_ALL)
        self._map(BOOT_STACK_BASE, RESERVED_END - BOOT_STACK_BASE, UC_PROT_READ | UC_PROT_WRITE)
        self._slot_pages_mapped: set[int] = set()
        gdt = struct.pack(f"<{len(GDT_ENTRIES)}Q", *GDT_ENTRIES)
        self.uc.mem_write(GDT_ADDR, gdt)
        for cpu in self.cpus:
            # Every CPU comes up in the boot state of the guest ABI: long mode, the GDT
            # loaded, IF=0.  Only the boot CPU has somewhere to go; the APs wait for their
            # startup IPI (see _start_secondary_cpu).
            uc = cpu.uc
            uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_ADDR, len(gdt) - 1, 0))
            uc.reg_write(X.UC_X86_REG_CS, KERNEL_CS)
            for seg in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES):
                uc.reg_write(seg, KERNEL_DS)
            uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)  # interrupts off until the guest says sti
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_RSP, BOOT_STACK_TOP)
        uc.reg_write(X.UC_X86_REG_RIP, self.image.entry)

        self.tasks = TaskView(self)
        pda = self.image.symbols.get("cpu_pda")
        if pda is not None:
            uc.reg_write(X.UC_X86_REG_GS_BASE, pda.address)

        for cpu in self.cpus:
            self._install_cpu_hooks(cpu)
        if self.userspace is not None:
            try:
                self.userspace.setup_memory()
            except UserSpaceError as exc:
                raise ProgramError(str(exc)) from None
            for cpu in self.cpus:
                self.userspace.install_cpu_hooks(cpu)
            self.userspace.install_kernel_hooks()
            self._until_never = self.userspace.until_never
            self.image.symbols.fallback = self.userspace.format_user_address
        self._next_tick = self.timer_period
        # The SMP scheduler: whose turn it is, and where the current round of quanta ends.
        self._turn = 0
        self._round_end = self.quantum

    def _install_cpu_hooks(self, cpu: Cpu) -> None:
        """The hooks every CPU needs: its clock, traps, port I/O and bad accesses."""
        uc = cpu.uc
        # The clock: exact count of instructions started in the image's text, a block at a
        # time, and of the detour copies in the tool's pages, an instruction at a time (see
        # _icount.c).  Each CPU's has its own struct icount (cpu.icount).
        lo, hi = self.image.text_span
        for kind, fn, begin, end in ((UC_HOOK_BLOCK, _BLOCK_HOOK, lo, hi - 1),
                                     (UC_HOOK_CODE, _TOOL_HOOK, RESERVED_BASE, RESERVED_END - 1)):
            handle = ctypes.c_size_t()
            err = uclib.uc_hook_add(
                uc._uch, ctypes.byref(handle), kind, ctypes.c_void_p(fn),
                ctypes.cast(ctypes.pointer(cpu.icount), ctypes.c_void_p), ctypes.c_uint64(begin),
                ctypes.c_uint64(end),
            )
            if err:
                raise MachineError(f"could not install the instruction counter (unicorn error {err})")
        # Traps (int3, the debug trap) are a probe's hot path: a plain ctypes callback,
        # without the binding's two wrapper frames (see add_fast_code_hook).  It works on
        # the current CPU (self.uc), the one that trapped: only one runs at a time.
        cpu.intr_cb = HOOK_INTR_CFUNC(self._on_interrupt_fast)
        handle = ctypes.c_size_t()
        err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INTR, ctypes.cast(cpu.intr_cb, ctypes.c_void_p),
                                None, ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise MachineError(f"could not install the interrupt hook (unicorn error {err})")
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(
            UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED
            | UC_HOOK_MEM_WRITE_PROT | UC_HOOK_MEM_FETCH_PROT,
            self._on_bad_access,
        )
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid_insn)

    def _map(self, addr: int, size: int, prot: int) -> None:
        """Map guest memory on every CPU.  One CPU: unicorn's own RAM, as always.  Several:
        one anonymous host mapping per region, mapped into every instance (mem_map_ptr), so
        all CPUs share the bytes; unicorn keeps no copy of its own."""
        if self.ncpus == 1:
            self.uc.mem_map(addr, size, prot)
            return
        ram = mmap.mmap(-1, size)  # page aligned and zero filled, as mem_map_ptr needs
        self._shared_ram.append(ram)
        ptr = ctypes.addressof(ctypes.c_char.from_buffer(ram))
        for cpu in self.cpus:
            cpu.uc.mem_map_ptr(addr, size, prot, ptr)

    # ------------------------------------------------------------------ CPUs
    def _switch_cpu(self, cpu: Cpu) -> None:
        """Make cpu the one registers, hooks' callbacks and the clock refer to."""
        self.cpu = cpu
        self.uc = cpu.uc
        self._uch = cpu.uch  # the C accessors act on this CPU's instance
        self._icount = cpu.icount
        self._retired_addr = cpu.retired_addr

    @property
    def cpu_id(self) -> int:
        """smp_processor_id(): the CPU that is running (or last ran, when stopped)."""
        return self.cpu.index

    @property
    def _next_tick(self) -> int:
        return self.cpu.next_tick

    @_next_tick.setter
    def _next_tick(self, value: int) -> None:
        self.cpu.next_tick = value

    def cpu_registers(self, index: int) -> dict[str, int]:
        """The general registers of any CPU (the current one or another)."""
        read = self.cpus[index].uc.reg_read
        return {name: read(REGISTERS[name]) for name in GENERAL_REGISTERS}

    def cpu_current_task(self, index: int) -> int:
        """The task_struct pointer CPU index runs (its %gs:pcurrent), 0 if it has none."""
        cpu = self.cpus[index]
        if cpu.state is CpuState.WAIT_FOR_SIPI:
            return 0
        if not self.tasks.has_kernel_tasks:
            return self.tasks.current_address() if index == 0 else 0
        try:
            return self.read_u64(cpu.uc.reg_read(X.UC_X86_REG_GS_BASE))
        except MachineError:
            return 0

    def end_quantum(self) -> None:
        """From a trap handler: this CPU gives up the rest of its quantum, and the other CPUs
        run theirs before it goes on (the stepping CPU of an in-place single-step, a CPU
        waiting for the kprobe lock).  Its clock stays where it stopped: it is not
        scheduled meanwhile, like a vCPU its host does not run, and it makes the instructions
        up in its next quantum, which ends at the next round's end as every CPU's does.  One
        CPU: nothing else could run, so this does nothing."""
        if self.ncpus == 1:
            return
        self._end_quantum = True
        self._stopping = True
        self.uc.emu_stop()

    def _start_secondary_cpu(self, params_addr: int) -> None:
        """The startup IPI (INIT/SIPI): the guest wrote struct ap_boot_params { u64 cpu, rip,
        rsp, gs_base } and sent its address to SMP_STARTUP_PORT.  The AP starts in the boot
        state at rip with its own stack and per-CPU data area; its clock starts at the
        sender's time and its local timer one period later."""
        try:
            index, rip, rsp, gs_base = struct.unpack("<4Q", self.read(params_addr, 32))
        except MachineError:
            return
        if not 0 < index < self.ncpus or self.cpus[index].state is not CpuState.WAIT_FOR_SIPI:
            return  # no such CPU, or already started: a real APIC ignores it too
        cpu = self.cpus[index]
        uc = cpu.uc
        uc.reg_write(X.UC_X86_REG_RIP, rip)
        uc.reg_write(X.UC_X86_REG_RSP, rsp)
        uc.reg_write(X.UC_X86_REG_GS_BASE, gs_base)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        cpu.icount.retired = self._clock_at_io()
        cpu.next_tick = cpu.icount.retired + self.timer_period
        cpu.state = CpuState.ONLINE

    def _map_image(self) -> None:
        # Segments may share pages; a page gets the union of the permissions of what lies on it.
        pages: dict[int, int] = {}
        for seg in self.image.segments:
            prot = UC_PROT_READ
            if seg.flags & 2:
                prot |= UC_PROT_WRITE
            if seg.flags & 1:
                prot |= UC_PROT_EXEC
            for page in range(seg.vaddr & ~(PAGE_SIZE - 1), seg.end, PAGE_SIZE):
                pages[page] = pages.get(page, 0) | prot
        # [tests fix] Map runs of consecutive pages with the same permissions in one call:
        # unicorn's mem_map is linear in the number of regions, so page-by-page mapping made
        # loading quadratic (an image with a 16 MiB bss took ~9 s to load).
        run_start = run_end = run_prot = None
        for page, prot in sorted(pages.items()):
            if run_start is not None and page == run_end and prot == run_prot:
                run_end += PAGE_SIZE
                continue
            if run_start is not None:
                self._map(run_start, run_end - run_start, run_prot)
            run_start, run_end, run_prot = page, page + PAGE_SIZE, prot
        if run_start is not None:
            self._map(run_start, run_end - run_start, run_prot)
        for seg in self.image.segments:
            self.uc.mem_write(seg.vaddr, seg.data)  # the rest of memsz (bss) is already zero
        self._image_pages = sorted(pages)

    @property
    def console(self) -> str:
        """Everything the guest has written to its serial console so far."""
        return self.serial.text

    # ------------------------------------------------------------------ clock
    @property
    def retired(self) -> int:
        """Guest instructions retired so far (the virtual clock's counter)."""
        return _peek_u64(self._retired_addr)

    @property
    def time_ns(self) -> int:
        return _peek_u64(self._retired_addr) * NS_PER_INSN

    def adjust_clock(self, delta: int) -> None:
        """Take instructions the tool planted (an int3 at a trampoline) off the clock."""
        self._icount.retired += delta
        self._icount.blk_end = 0  # the count is settled by hand from here

    def set_clock(self, retired: int) -> None:
        """Put the clock back, for work the guest did on the tool's behalf (a jprobe handler)."""
        self._icount.retired = retired
        self._icount.blk_end = 0

    def _clock_at(self, addr: int, started: bool) -> tuple[int, int] | None:
        """The exact count at the instruction at addr inside the block being run, which the
        block hook counted whole when it began (see _icount.c): (count with the instruction
        at addr started or not, instructions of the block after it).  None when addr is not
        in that block (the count is exact already)."""
        ic = self._icount
        if not (ic.blk_end and ic.blk_addr <= addr < ic.blk_end):
            return None
        index = len(self._block_instructions(ic.blk_addr, addr))
        return ic.blk_base + index + started, ic.blk_n - index - 1

    def _block_instructions(self, start: int, end: int) -> list[tuple[int, str]]:
        """(address, mnemonic) of each instruction in [start, end), as the CPU sees memory."""
        return [(a, mn) for a, _s, mn, _o in _DECODER.disasm_lite(self.read(start, end - start), start)]

    def _settle_clock(self, addr: int, started: bool) -> None:
        """The block being run stops being run at addr (a fault, a stop): count exactly."""
        exact = self._clock_at(addr, started)
        if exact is not None:
            self._icount.retired = exact[0]
            self._icount.blk_end = 0

    # ------------------------------------------------------------------ registers
    def reg(self, name: str) -> int:
        return _reg_read(self._uch, REGISTERS[name])

    def set_reg(self, name: str, value: int) -> None:
        if name == "rip":
            self.rip_writes += 1
        _reg_write(self._uch, REGISTERS[name], value & 0xFFFFFFFFFFFFFFFF)

    def registers(self) -> dict[str, int]:
        uch = self._uch
        return {name: _reg_read(uch, REGISTERS[name]) for name in GENERAL_REGISTERS}

    @property
    def rip(self) -> int:
        return _reg_read(self._uch, _REG_RIP)

    # ------------------------------------------------------------------ memory
    def read(self, addr: int, size: int) -> bytes:
        try:
            return _mem_read(self._uch, addr, size)
        except _UcAccessError:
            if self.userspace is not None:  # a user address: through the page tables
                try:
                    return self.userspace.read_virtual(addr, size)
                except UserSpaceError:
                    pass
            raise MachineError(f"cannot read {size} bytes at 0x{addr:x}: not mapped") from None

    def write(self, addr: int, data: bytes) -> None:
        try:
            _mem_write(self._uch, addr, data)
        except _UcAccessError:
            raise MachineError(f"cannot write {len(data)} bytes at 0x{addr:x}: not mapped") from None
        if self._overlaps_code(addr, len(data)):
            # Code changed under the translator: drop translated blocks holding it, on
            # every CPU (each unicorn instance has its own translation cache), and the
            # clock's instruction counts of those blocks.
            for cpu in self.cpus:
                cpu.uc.ctl_remove_cache(addr, addr + len(data))
            _icount.forget_blocks(ctypes.addressof(self._block_table), addr, addr + len(data))

    def read_u64(self, addr: int) -> int:
        try:
            return _read_u64(self._uch, addr)
        except _UcAccessError:
            raise MachineError(f"cannot read 8 bytes at 0x{addr:x}: not mapped") from None

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_u64_at_reg(self, name: str, offset: int = 0) -> int:
        """The u64 at register + offset (e.g. %gs:0), in one call."""
        try:
            return _read_u64_at_reg(self._uch, REGISTERS[name], offset)
        except _UcAccessError:
            raise MachineError(f"cannot read 8 bytes at {name}+0x{offset:x}: not mapped") from None

    def exchange_top_of_stack(self, value: int) -> tuple[int, int]:
        """Replace the u64 at rsp by value; (rsp, the old value).  In one call: a
        kretprobe's entry does this on every hit."""
        try:
            return _exchange_top_of_stack(self._uch, _REG_RSP, value)
        except _UcAccessError:
            raise MachineError("cannot exchange the top of the stack: not mapped") from None

    def push_u64(self, value: int) -> None:
        """rsp -= 8; *rsp = value (stack memory: no translation-cache check)."""
        try:
            _push_u64(self._uch, _REG_RSP, value)
        except _UcAccessError:
            raise MachineError("cannot push: the stack is not mapped") from None

    def write_stack_u64(self, addr: int, value: int) -> None:
        """write_u64 for memory that holds no code (a stack slot): no translation-cache
        check, for the probe engine's hot paths."""
        try:
            _write_u64(self._uch, addr, value & 0xFFFFFFFFFFFFFFFF)
        except _UcAccessError:
            raise MachineError(f"cannot write 8 bytes at 0x{addr:x}: not mapped") from None

    def read_cstring(self, addr: int, limit: int = 256) -> bytes:
        out = bytearray()
        while len(out) < limit:
            chunk = self.read(addr + len(out), min(64, limit - len(out), PAGE_SIZE - ((addr + len(out)) & 0xFFF)))
            nul = chunk.find(0)
            if nul >= 0:
                out += chunk[:nul]
                break
            out += chunk
        return bytes(out)

    def is_mapped(self, addr: int, size: int = 1) -> bool:
        try:
            self.uc.mem_read(addr, size)
            return True
        except UcError:
            return False

    def _overlaps_code(self, addr: int, size: int) -> bool:
        if RESERVED_BASE <= addr < RESERVED_END:
            return True
        return any(a < addr + size and addr < b for a, b in self.image.text_ranges)

    def map_tool_page(self, page: int) -> None:
        """Map one of the tool's executable pages (instruction slots, detours)."""
        if page not in self._slot_pages_mapped:
            self._map(page, PAGE_SIZE, UC_PROT_READ | UC_PROT_EXEC | UC_PROT_WRITE)
            self._slot_pages_mapped.add(page)

    def count_in_detours(self, base: int, size: int) -> ctypes.Array:
        """Count the instructions of [base, base+size) that stand for guest instructions.

        The clock's hook (see _icount.c) covers the tool's pages too; this gives it the byte
        map of that range: set map[a - base] = 1 for each address a whose instruction must
        be counted (and deadline-checked) like a guest instruction.  [base, base+size) must
        be in the tool's pages, and the map must be set before the code there runs.
        """
        if self._detour_counter is not None:
            return self._detour_counter
        if not (RESERVED_BASE <= base and base + size <= RESERVED_END):
            raise MachineError("detour buffers must be in the tool's pages")
        counted = (ctypes.c_uint8 * size)()
        for cpu in self.cpus:  # one map, shared by every CPU's clock
            ic = cpu.icount
            ic.counted = ctypes.cast(counted, ctypes.c_void_p)
            ic.detour_base, ic.detour_size = base, size
        self._detour_counter = counted  # kept alive as long as the machine
        return counted

    def guest_address(self, addr: int) -> int:
        """The guest address an address stands for: itself, unless it is in the tool's
        pages (a relocated copy of a probed instruction), then the original's."""
        if RESERVED_BASE <= addr < RESERVED_END:
            for translate in self.address_translators:
                orig = translate(addr)
                if orig is not None:
                    return orig
        return addr

    def guest_memory(self) -> dict[int, bytes]:
        """Every page of the image's segments, for comparing two runs byte for byte."""
        return {page: self.read(page, PAGE_SIZE) for page in self._image_pages}

    # ------------------------------------------------------------------ hooks
    def add_code_hook(self, addr: int, callback: Callable[["Machine"], None], *,
                      cpus: list[int] | None = None) -> int:
        """Call callback(machine) each time the instruction at addr is about to run, on every
        CPU (or on the CPUs listed); returns a handle for remove_hook."""
        for watch in self.code_hook_watchers:
            watch(addr)  # e.g. a jump planted over addr would keep the guest from running it
        hooks = []
        for cpu in self.cpus if cpus is None else [self.cpus[i] for i in cpus]:
            hooks.append((cpu.uc, cpu.uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, ud: self._call_code_hook(callback, a),
                                                  None, addr, addr)))
            # Blocks translated before the hook existed would not call it.
            cpu.uc.ctl_remove_cache(addr, addr + 1)
        token, self._next_hook_token = self._next_hook_token, self._next_hook_token + 1
        self._code_hooks[token] = hooks
        self.hooked_addresses[token] = addr
        return token

    def _call_code_hook(self, callback: Callable[["Machine"], None], addr: int) -> None:
        """An exact-address hook in the middle of a block: the clock counted the whole block
        when it began; the callback sees the count as the instruction's own (it has started,
        as a per-instruction counter would have it), and the rest of the block is counted
        again after it unless the block stops here (a stop, or rip moved)."""
        ic = self._icount
        ic.if_may_rise = 1  # the callback may change IF (see _icount.c)
        exact = self._clock_at(addr, True)
        if exact is None:
            callback(self)
            return
        ic.retired, rest = exact
        self._stopping = False
        callback(self)
        if not self._stopping and self.rip == addr:
            ic.retired += rest
        else:
            ic.blk_end = 0

    def add_fast_code_hook(self, begin: int, end: int, callback: Callable[[int], None]) -> int:
        """A code hook on [begin, end] called as callback(address) without unicorn's Python
        binding, which wraps every hook in two more Python
        frames and argument packing, a good part of a probe hit's cost.  In the tool's
        pages the clock's C hook dispatches to it, calling it through the C API (no new
        unicorn hook, so nothing is added to what every guest instruction costs; and no
        ctypes thunk, whose argument conversion costs about 0.1 us per hit); elsewhere it
        is a unicorn hook with a ctypes callback (and the clock as of the block's start, see
        _icount.c: use add_code_hook in the text).

        The callback must not let an exception escape (ctypes would only print it): catch
        it and pass it to hook_failed(), which stops the guest and makes run() raise it,
        as unicorn does for its own hooks."""
        if RESERVED_BASE <= begin <= end < RESERVED_END and self._icount.n_tool_hooks < _MAX_TOOL_HOOKS:
            # In the tool's pages the clock's hook dispatches to it: no new unicorn hook,
            # so nothing is added to what every guest instruction costs.  Every CPU's
            # clock gets it (the callback works on the current CPU, the one running).
            # It calls the callable through the C API, not a ctypes thunk (cheaper per
            # hit); the C side holds no reference: this list does, for the machine's life.
            self._fast_hooks.append(callback)
            for cpu in self.cpus:
                ic = cpu.icount
                slot = ic.tool_hooks[ic.n_tool_hooks]
                slot.begin, slot.end, slot.cb, slot.py = begin, end, None, id(callback)
                ic.n_tool_hooks += 1
            return -1
        cb = HOOK_CODE_CFUNC(lambda _uch, address, _size, _data: callback(address))
        self._fast_hooks.append(cb)  # ctypes frees the thunk with the last reference
        handles = []
        for cpu in self.cpus:
            handle = ctypes.c_size_t()
            err = uclib.uc_hook_add(
                cpu.uc._uch, ctypes.byref(handle), UC_HOOK_CODE, ctypes.cast(cb, ctypes.c_void_p), None,
                ctypes.c_uint64(begin), ctypes.c_uint64(end),
            )
            if err:
                raise MachineError(f"could not add a code hook (unicorn error {err})")
            cpu.uc.ctl_remove_cache(begin, end + 1)
            handles.append((cpu.uc, handle.value))
        token, self._next_hook_token = self._next_hook_token, self._next_hook_token + 1
        self._code_hooks[token] = handles
        return token

    def hook_failed(self, exc: BaseException) -> None:
        """From a fast hook: stop the guest; run() raises exc (as for unicorn's hooks)."""
        if self.uc._hook_exception is None:
            self.uc._hook_exception = exc
        self._stopping = True
        self.uc.emu_stop()

    def remove_hook(self, handle: int) -> None:
        for uc, h in self._code_hooks.pop(handle, ()):
            uc.hook_del(h)
        self.hooked_addresses.pop(handle, None)

    def stop_guest(self, event: StopEvent) -> None:
        """From a trap handler: stop the run after this trap with event as the reason."""
        if self._pending_stop is None:
            self._pending_stop = event
        self._stopping = True
        self.uc.emu_stop()

    def uncount_current(self) -> None:
        """The instruction about to run was counted but will not run now (a stop at it)."""
        self._icount.retired -= 1

    # ------------------------------------------------------------------ running
    def request_stop(self) -> None:
        """Thread-safe: stop a running guest as soon as possible (Ctrl-C)."""
        self._stop_requested = True
        if not self._running:
            return
        if threading.get_ident() == self._run_thread:  # from a hook: unicorn stops at once
            self._stopping = True
            self.uc.emu_stop()
            return
        # From another thread, the clock's hooks stop the CPU at its next block (see
        # stop_asked in _icount.c).  Code they do not see (the guest running in its data
        # pages, say) is stopped by unicorn after a moment.
        for cpu in self.cpus:
            cpu.icount.stop_asked = 1
        fallback = threading.Timer(0.25, self._stop_if_still_running, args=(self._run_serial,))
        fallback.daemon = True
        fallback.start()

    def _stop_if_still_running(self, serial: int) -> None:
        if self._running and self._run_serial == serial:
            self.uc.emu_stop()

    @property
    def running(self) -> bool:
        return self._running

    def run(self, max_insns: int | None = None) -> StopEvent:
        """Run until the guest stops; max_insns bounds the instructions retired in this run."""
        if self._running:
            # [robustness fix] run() from inside a trap (a probe handler) deadlocked on _lock.
            raise MachineError("the guest is already running (run() called from a probe handler?)")
        if self.halted:
            event = self._event(StopReason.HALTED, "the guest has halted; `reset` for a fresh machine")
            return event
        if self.last_stop is not None and self.last_stop.reason in (StopReason.FAULT, StopReason.BUG):
            return self.last_stop
        self._stop_requested = False
        for cpu in self.cpus:
            cpu.icount.stop_asked = 0
        for prepare in self.before_run:
            prepare()
        budget_end = None if max_insns is None else self._icount.retired + max(0, max_insns)
        with self._lock:
            self._run_thread = threading.get_ident()
            self._run_serial += 1
            self._running = True
            try:
                event = self._run_loop(budget_end) if self.ncpus == 1 else self._run_smp(budget_end)
            finally:
                self._running = False
        self.serial.flush_partial()
        for finish in self.after_run:
            finish(event)
        self.last_stop = event
        if event.reason is StopReason.HALTED:
            self.halted = True
        return event

    def _run_loop(self, budget_end: int | None) -> StopEvent:
        """One CPU: run it until something stops the guest."""
        return self._run_cpu(budget_end)

    def _run_smp(self, budget_end: int | None) -> StopEvent:
        """Several CPUs: each online CPU in turn runs until its clock reaches the end of the
        current round (round_end, a multiple of the quantum), then the next; when the last
        CPU has had its turn the round ends one quantum later.  The turn and the round are
        machine state, so a run stopped part way (budget, breakpoint, Ctrl-C) and resumed
        interleaves exactly as one that never stopped."""
        cpus = self.cpus
        while True:
            if self._stop_requested:
                return self._event(StopReason.INTERRUPTED, "stopped by request (Ctrl-C)")
            cpu = cpus[self._turn]
            if cpu.state is CpuState.ONLINE:
                self._switch_cpu(cpu)
                result = self._run_cpu(budget_end, self._round_end)
                if result is _PARKED:
                    cpu.state = CpuState.PARKED
                    if not any(c.state is CpuState.ONLINE for c in cpus):
                        return self._event(
                            StopReason.HALTED, "hlt with interrupts off on every CPU: the machine halted")
                elif result is not _QUANTUM_OVER:
                    return result
            self._turn += 1
            if self._turn == len(cpus):
                self._turn = 0
                self._round_end += self.quantum

    def _run_cpu(self, budget_end: int | None, quantum_end: int | None = None):
        """Run the current CPU until something stops the guest (a StopEvent), or, with a
        quantum_end (SMP), until its clock reaches it (_QUANTUM_OVER), it gives the rest of
        its quantum up (end_quantum), or it parks in `cli; hlt` (_PARKED)."""
        uc, ic, cpu = self.uc, self._icount, self.cpu
        until = self._until_never  # where a deadline inside a block is (see _split_block)
        hard_limit = _NO_DEADLINE  # the deadlines besides the timer's
        if budget_end is not None:
            hard_limit = budget_end
        if quantum_end is not None and quantum_end < hard_limit:
            hard_limit = quantum_end
        while True:
            if self._stop_requested:
                return self._event(StopReason.INTERRUPTED, "stopped by request (Ctrl-C)")
            if budget_end is not None and ic.retired >= budget_end:
                return self._event(StopReason.BUDGET, "instruction budget reached")
            if quantum_end is not None and ic.retired >= quantum_end:
                return _QUANTUM_OVER
            ic.tick, ic.limit = self._next_tick, hard_limit
            ic.deadline = min(self._next_tick, hard_limit)
            ic.retry = IRQ_RETRY if cpu.irq_waiting else 0
            ic.if_may_rise = 1  # whatever ran meanwhile (a delivered interrupt, a handler) may have set IF
            ic.split_size = 0
            self._fault = None
            self._stopping = False
            try:
                uc.emu_start(self.rip, until)
            except UcError as exc:
                self._end_quantum = False
                self._settle_clock(self.rip, True)  # the faulting instruction started
                if self._notify_fault(14 if self._fault and self._fault[1] is not None else 6):
                    continue
                return self._fault_event(exc)
            finally:
                ic.deadline = _NO_DEADLINE
                self._next_tick = ic.tick  # the block hook moves a tick waiting for IF on
                stopped_at_until, until = until, self._until_never
            deadline = min(self._next_tick, hard_limit)
            if self._stop_requested:
                # A stop from another thread can land after the block hook counted a block
                # and before its end: before its first instruction, or after an in/out
                # (unicorn looks at stop requests after an I/O hook).
                self._settle_clock(self.rip, False)
            if self._pending_stop is not None:
                event, self._pending_stop = self._pending_stop, None
                self._end_quantum = False
                return event
            if self._fault is not None:
                self._end_quantum = False
                self._settle_clock(self.rip, True)
                return self._fault_event(None)
            if self._end_quantum:
                self._end_quantum = False
                return _QUANTUM_OVER
            if self._stop_requested and not self._stopped_after_hlt():
                continue  # (a CPU that executed hlt goes to sleep first: the stop must not wake it)
            if ic.split_size:
                until = self._split_block(ic.split_addr, ic.split_size, deadline - ic.retired, stopped_at_until)
                continue
            at_until = self.rip == stopped_at_until
            if at_until and ic.retired < deadline:
                continue  # the block was reached another way, before the deadline: run on
            # [tests fix] A hlt that is exactly the deadline-th instruction also leaves
            # retired == deadline; it was taken for a deadline stop, and the next run
            # resumed past the hlt (a user image then ran off the end of _start).
            if ic.retired >= deadline and (at_until or not self._stopped_after_hlt()):
                shutdown = self._timer_tick()
                if shutdown is not None:
                    return shutdown
                continue
            # emu_start came back on its own: the guest executed hlt.
            if self.read(self.rip - 1, 1) != b"\xf4":
                return self._event(StopReason.FAULT, "the CPU stopped for no known reason")
            eflags = uc.reg_read(X.UC_X86_REG_EFLAGS)
            if not eflags & EFLAGS_IF:
                if quantum_end is not None:
                    return _PARKED
                return self._event(StopReason.HALTED, "hlt with interrupts off: the machine halted")
            if not self._timer_vector_present():
                if quantum_end is not None:
                    return _PARKED
                return self._event(StopReason.HALTED, "hlt with interrupts on, but the guest has no timer vector")
            # Idle: the CPU sleeps until the next tick; the clock jumps there (or to the end
            # of the budget or of its quantum, when that comes first).
            limit = budget_end
            if quantum_end is not None and (limit is None or quantum_end < limit):
                limit = quantum_end
            if limit is not None and limit < self._next_tick:
                ic.retired = max(ic.retired, limit)
                continue
            ic.retired = max(ic.retired, self._next_tick)
            shutdown = self._timer_tick()
            if shutdown is not None:
                return shutdown

    def _split_block(self, start: int, size: int, k: int, until_before: int) -> int:
        """A deadline falls k instructions into the block [start, start+size), which the
        block hook saw beginning and stopped before (see _icount.c).  Returns the address of
        its k-th instruction, to run with `until` there: the block is dropped from the
        translation cache, so that unicorn translates it again and ends it at that
        address (a cached block would run past it)."""
        addresses = [a for a, _mn in self._block_instructions(start, start + size)]
        if not 0 < k < len(addresses) or addresses[k] == until_before:
            raise MachineError(f"the clock cannot stop {k} instructions into the block at 0x{start:x}")
        self.uc.ctl_remove_cache(start, start + size)
        return addresses[k]

    def _stopped_after_hlt(self) -> bool:
        """Did emu_start return because the guest executed hlt (rather than at a deadline
        just after an instruction whose last byte happens to be 0xf4)?"""
        rip = self.rip
        if RESERVED_BASE <= rip < RESERVED_END:
            return False  # the tool's pages hold no hlt: a deadline stop in a detour buffer
        if not self.is_mapped(rip - 1) or self.read(rip - 1, 1) != b"\xf4":
            return False
        hit = self.image.symbols.containing(rip - 1)
        if hit is None or not hit[0].size or not hit[0].contains(rip - 1):
            return True
        from capstone import CS_ARCH_X86, CS_MODE_64, Cs

        sym = hit[0]
        code = self.image.symbol_bytes(sym)  # the file's bytes: no planted int3 in the way
        for address, _size, _mn, _ops in Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite(code, sym.address):
            if address >= rip - 1:
                return address == rip - 1
        return False

    def _timer_tick(self) -> StopEvent | None:
        """The count reached the next tick: deliver it, or hold it until IF is set.  Returns
        a stop event when the CPU cannot take the interrupt at all (a triple fault)."""
        ic = self._icount
        if ic.retired < self._next_tick:
            return None
        if not _reg_read(self._uch, _REG_EFLAGS) & EFLAGS_IF:
            # Interrupts are off: the tick is held (the local APIC keeps it pending) and
            # looked at again a few instructions later.  The clock's block hook skips the
            # retries it knows would fail (see _icount.c).
            self._next_tick = ic.retired + IRQ_RETRY
            self.cpu.irq_waiting = True
            return None
        self.cpu.irq_waiting = False
        if shutdown := self._interrupt_frame_problem(TIMER_VECTOR):
            return self._event(StopReason.FAULT, shutdown, details={"vector": TIMER_VECTOR, "triple_fault": True})
        # Delivered, or dropped when the guest has no timer vector (it never set one up).
        self._deliver_interrupt(TIMER_VECTOR)
        while self._next_tick <= ic.retired:
            self._next_tick += self.timer_period
        return None

    def _interrupt_frame_problem(self, vector: int) -> str | None:
        """[robustness fix] Why the CPU could not push an interrupt frame, if it could not.

        With the stack pointer in unmapped memory, pushing the frame page-faults,
        the #PF cannot be delivered on that stack either (#DF), and the CPU shuts down: a
        triple fault.  Before, the host's write of the frame raised MachineError out of run().
        """
        if self.userspace is not None and self.userspace.user_mode():
            return None  # the trap gate switches to the kernel stack
        rsp = self.uc.reg_read(X.UC_X86_REG_RSP)
        frame_at = ((rsp & ~0xF) - 40) & 0xFFFFFFFFFFFFFFFF
        if self.is_mapped(frame_at, 40) or self._idt_gate(vector) is None:
            return None
        return (f"triple fault: the timer interrupt (vector 0x{vector:x}) cannot be delivered: its frame "
                f"would go to 0x{frame_at:x} (rsp 0x{rsp:x}), which is not mapped memory "
                "(#PF while delivering, then #DF: the CPU shuts down)")

    def _timer_vector_present(self) -> bool:
        return self._idt_gate(TIMER_VECTOR) is not None

    def _idt_gate(self, vector: int) -> tuple[int, int] | None:
        """(handler, gate type) of an IDT entry, or None when the guest has none."""
        _sel, base, limit, _flags = self.uc.reg_read(X.UC_X86_REG_IDTR)
        if limit < vector * 16 + 15:
            return None
        try:
            gate = self.read(base + vector * 16, 16)
        except MachineError:
            return None
        lo, sel, ist, attr, mid, hi, _ = struct.unpack("<HHBBHII", gate)
        if not attr & 0x80:
            return None
        return lo | (mid << 16) | (hi << 32), attr & 0xF

    def _deliver_interrupt(self, vector: int) -> bool:
        """Enter the guest's handler as the CPU would: an iretq frame on an aligned stack."""
        gate = self._idt_gate(vector)
        if gate is None:
            return False
        if self.userspace is not None and self.userspace.user_mode():
            return self.userspace.enter_trap(vector)
        handler, gate_type = gate
        read = self.uc.reg_read
        rsp = read(X.UC_X86_REG_RSP)
        rflags = read(X.UC_X86_REG_EFLAGS)
        frame = struct.pack(
            "<5Q", read(X.UC_X86_REG_RIP), read(X.UC_X86_REG_CS), rflags, rsp, read(X.UC_X86_REG_SS)
        )
        new_rsp = (rsp & ~0xF) - len(frame)
        self.write(new_rsp, frame)
        self.uc.reg_write(X.UC_X86_REG_RSP, new_rsp)
        if gate_type == 0xE:  # interrupt gate: IF off on entry; trap gates leave it
            rflags &= ~EFLAGS_IF
        self.uc.reg_write(X.UC_X86_REG_EFLAGS, rflags & ~EFLAGS_TF)
        self.uc.reg_write(X.UC_X86_REG_RIP, handler)
        return True

    # ------------------------------------------------------------------ traps and I/O
    def _on_interrupt_fast(self, _uch, intno: int, _data) -> None:
        try:
            self._on_interrupt(self.uc, intno, None)
        except BaseException as exc:  # noqa: BLE001 - stop the guest, run() raises it
            self.hook_failed(exc)

    def _on_interrupt(self, uc: Uc, intno: int, user_data) -> None:
        self._icount.if_may_rise = 1  # the trap's handler may change IF (see _icount.c)
        if intno not in (1, 3):
            # A fault in the middle of a block (#DE, say) ends it there: count exactly.
            # (Traps end their block: rip is past it.)
            self._settle_clock(uc.reg_read(X.UC_X86_REG_RIP), True)
        if self.userspace is not None and self.userspace.user_mode():
            self.userspace.enter_trap(intno)  # a program's fault: its kernel deals with it
            return
        handler = self.trap_handlers.get(intno)
        if handler is not None and handler(self):
            return
        if intno not in (1, 3) and self._notify_fault(intno):
            return
        rip = uc.reg_read(X.UC_X86_REG_RIP)
        if intno == 3:
            where = self.image.symbols.format(rip - 1)
            msg = f"int3 at {where} that no probe owns (a guest breakpoint with no debugger)"
        else:
            msg = FAULT_NAMES.get(intno, f"exception vector {intno}")
        self.stop_guest(self._event(StopReason.FAULT, msg, details={"vector": intno}))

    def _note_io(self) -> None:
        """Count the in/out instructions of the block being run, for _clock_at_io."""
        ic = self._icount
        block = (ic.blk_addr, ic.blk_end, ic.blk_base)
        if block == self._io_block:
            self._io_index += 1
        else:
            self._io_block, self._io_index = block, 0

    def _clock_at_io(self) -> int:
        """The exact count at the in/out instruction being run.  unicorn does not bring rip
        up to date for an I/O hook (only code hooks and faults do), so it is found as the
        n-th in/out of the block the clock counted whole (see _note_io)."""
        ic = self._icount
        if ic.blk_end and self._io_block == (ic.blk_addr, ic.blk_end, ic.blk_base):
            seen = 0
            for index, (_a, mnemonic) in enumerate(self._block_instructions(ic.blk_addr, ic.blk_end)):
                if mnemonic in ("in", "out"):
                    if seen == self._io_index:
                        return ic.blk_base + index + 1
                    seen += 1
        return ic.retired  # not in the block (a probed in/out stepped in its slot): exact already

    def _on_out(self, uc: Uc, port: int, size: int, value: int, user_data) -> None:
        self._note_io()
        if port == SERIAL_PORT:
            self.serial.write_byte(value & 0xFF)
        elif port == SMP_STARTUP_PORT and size == 4:
            self._start_secondary_cpu(value & 0xFFFFFFFF)

    def _on_in(self, uc: Uc, port: int, size: int, user_data) -> int:
        self._note_io()
        if port == SERIAL_LSR:
            return 0x60  # transmitter empty: the guest may always send
        if port == SMP_STARTUP_PORT:
            return self.ncpus  # how many CPUs the machine has (the MP table, in short)
        return 0xFF

    _ACCESS = {
        UC_MEM_READ_UNMAPPED: "read from unmapped memory",
        UC_MEM_WRITE_UNMAPPED: "write to unmapped memory",
        UC_MEM_FETCH_UNMAPPED: "execute from unmapped memory",
        UC_MEM_WRITE_PROT: "write to read-only memory",
        UC_MEM_FETCH_PROT: "execute from non-executable memory",
    }

    def _on_bad_access(self, uc: Uc, access: int, address: int, size: int, value: int, user_data) -> bool:
        self._fault = (self._ACCESS.get(access, f"bad memory access ({access})"), address)
        return False

    def _on_invalid_insn(self, uc: Uc, user_data) -> bool:
        self._fault = (FAULT_NAMES[6], None)
        return False

    def _notify_fault(self, trapnr: int) -> bool:
        if self.fault_notifier is not None and self.fault_notifier(self, trapnr):
            self._fault = None
            return True
        return False

    def _fault_event(self, exc: UcError | None) -> StopEvent:
        if self._fault is not None:
            what, address = self._fault
        else:
            what, address = (str(exc) if exc else "fault"), None
        rip = self.rip
        if address is not None:
            what = f"{what} at 0x{address:x}"
            rsp = self.reg("rsp")
            if address < rsp and rsp - address <= 2 * PAGE_SIZE and "write" in what:
                what += " (just below rsp: a stack overflow?)"
        self._fault = None
        return self._event(StopReason.FAULT, what, fault_address=address, rip=rip)

    def _event(self, reason: StopReason, message: str, *, rip: int | None = None, **kw) -> StopEvent:
        cur = self.tasks.current()
        return StopEvent(
            reason=reason,
            rip=self.rip if rip is None else rip,
            message=message,
            time_ns=self.time_ns,
            task=f"{cur.comm}-{cur.pid}" if cur else "",
            **kw,
        )

    def describe_stop(self, event: StopEvent) -> str:
        rip = self.guest_address(event.rip)
        where = self.image.symbols.format(rip)
        parts = [f"{event.reason.value}: {event.message}", f"rip {where} (0x{rip:x})"]
        if rip != event.rip:
            parts[-1] += f" [running its relocated copy at 0x{event.rip:x}]"
        if event.task:
            parts.append(f"task {event.task}")
        return ", ".join(parts)

    # Unicorn state for tests and the debugger's `regs`.
    @property
    def eflags(self) -> int:
        return _reg_read(self._uch, _REG_EFLAGS)

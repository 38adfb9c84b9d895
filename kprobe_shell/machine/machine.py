"""The emulated x86_64 computer: memory, registers, hooks and the run loop.

The machine knows nothing about probes.  It reports traps (int3, the debug trap) to
whoever registered for them, offers exact single-address code hooks, and runs the guest
until something stops it: `hlt` with interrupts off, an instruction budget, a request
from another thread (Ctrl-C), a fault, or a stop asked for by a trap handler.

What it is made of, each in a module of its own:
  clock.py       each CPU's instruction clock (the C hooks of _clock.c count)
  smp.py         the CPUs, their start-up IPI and their round-robin scheduling
  interrupts.py  the local timer and delivery through the guest's IDT
  traps.py       the guest's exceptions: to the probe engine's handlers, or a fault report
  devices.py     the serial console and the I/O ports
  capi.py        the C register and memory accessors (for the probe engine's hot paths)

Speed: no hook runs on every guest instruction.  The clock counts the image's text a
translated block at a time and the tool's own pages an instruction at a time (a C code
hook that also dispatches to the probe engine's callbacks on the tool's code); everything
else is an exact-address hook or a trap.  Register and memory access goes through the C
accessors, on the current CPU's unicorn instance.

SMP (`cpus=N`): one unicorn instance per CPU, all mapping the same host buffers with
`mem_map_ptr`, so a store by one CPU is seen by every other at once.  What is per instance
and must be kept coherent by hand is the translation cache: every write to code (an int3
planted, a slot filled) drops the translated blocks on every CPU.  Each CPU has its own
registers (so its own GS_BASE, per-CPU data area and `current`), its own IDTR, its own
clock and its own local timer.  Each CPU's clock hook has its own state (counter, deadline)
but shares the detour byte map and the tool-code callbacks, and every hook is installed on
every CPU.  With one CPU nothing of this is in the way: the single instance maps memory as
it always did and runs without a quantum.
"""
from __future__ import annotations

import ctypes
import mmap
import struct
import threading
from typing import Callable

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_CODE,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from . import capi
from .debug import Debugger
from .clock import NO_DEADLINE, NS_PER_INSN, BlockTable, InstructionClock
from .devices import Console, Ports
from .events import MachineError, StopEvent, StopReason
from .image import Image
from .interrupts import IRQ_RETRY, Interrupts
from .layout import (
    BOOT_STACK_BASE,
    BOOT_STACK_TOP,
    EFLAGS_IF,
    GDT_ADDR,
    GDT_ENTRIES,
    KERNEL_CS,
    KERNEL_DS,
    MAX_CPUS,
    PAGE_SIZE,
    RESERVED_BASE,
    RESERVED_END,
    SMP_QUANTUM,
)
from .registers import GENERAL_REGISTERS, REGISTERS
from .smp import PARKED, QUANTUM_OVER, Cpu, CpuState, Scheduler
from .tasks import TaskView
from .userspace import DEFAULT_RAM_SIZE, Program, user_space_for
from .traps import FAULT_NAMES, Traps

__all__ = [
    "FAULT_NAMES", "GENERAL_REGISTERS", "NS_PER_INSN", "REGISTERS", "Console", "Cpu", "CpuState", "Machine",
    "MachineError", "StopEvent", "StopReason", "check_machine_config",
]

def check_machine_config(*, timer_period: int, cpus: int, quantum: int = SMP_QUANTUM) -> None:
    """The machine's own parameters, checked before any image is read (a bad one is the
    caller's mistake, not the image's)."""
    if timer_period < 100:
        raise MachineError("the timer period must be at least 100 instructions")
    if not 1 <= cpus <= MAX_CPUS:
        raise MachineError(f"the machine has 1 to {MAX_CPUS} CPUs (asked for {cpus})")
    if quantum < 1:
        raise MachineError("the SMP quantum must be at least 1 instruction")


#: uc_cb_hookcode_t: (uc, address, size, user_data).
HOOK_CODE_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p)
#: emu_start's `until` when no deadline falls inside a block.
UNTIL_NEVER = (1 << 64) - 1
#: _after_hlt's answer when the CPU goes on running.
_GO_ON = object()

_reg_read, _reg_write = capi.reg_read, capi.reg_write
_mem_read, _mem_write = capi.mem_read, capi.mem_write
_read_u64, _write_u64 = capi.read_u64, capi.write_u64
_peek_u64 = capi.peek_u64
_AccessError = capi.AccessError
_REG_RSP = X.UC_X86_REG_RSP
_REG_RIP = X.UC_X86_REG_RIP
_REG_EFLAGS = X.UC_X86_REG_EFLAGS


def _page_runs(image: Image) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The image's segments as runs of consecutive pages with the same permissions,
    (start, size, prot) each, and every page they cover.  Segments may share pages; a page
    gets the union of the permissions of what lies on it.  unicorn's mem_map is linear in
    the number of regions, so mapping page by page would make loading quadratic."""
    pages: dict[int, int] = {}
    for seg in image.segments:
        prot = UC_PROT_READ
        if seg.flags & 2:
            prot |= UC_PROT_WRITE
        if seg.flags & 1:
            prot |= UC_PROT_EXEC
        for page in range(seg.vaddr & ~(PAGE_SIZE - 1), seg.end, PAGE_SIZE):
            pages[page] = pages.get(page, 0) | prot
    runs: list[tuple[int, int, int]] = []
    for page, prot in sorted(pages.items()):
        if runs and runs[-1][0] + runs[-1][1] == page and runs[-1][2] == prot:
            start, size, _ = runs[-1]
            runs[-1] = (start, size + PAGE_SIZE, prot)
        else:
            runs.append((page, PAGE_SIZE, prot))
    return runs, sorted(pages)


def _arm_clock(ic, cpu, hard_limit: int) -> None:
    """The clock's deadlines for the next emu_start: the CPU's next tick and the others."""
    ic.tick, ic.limit = cpu.next_tick, hard_limit
    ic.deadline = min(cpu.next_tick, hard_limit)
    ic.retry = IRQ_RETRY if cpu.irq_waiting else 0
    ic.if_may_rise = 1  # whatever ran meanwhile (a delivered interrupt, a handler) may have set IF
    ic.split_size = ic.split_stop = 0


def _answer_stop_asked(machine: "Machine") -> None:
    """C code set a CPU's stop word with no stop requested: its listeners act (a trace
    ring's output prints), and every CPU runs on."""
    for cpu in machine.cpus:
        cpu.icount.stop_asked = 0
    for listener in machine.on_stop_asked:
        listener()


def _hard_limit(budget_end: int | None, quantum_end: int | None) -> int:
    """A run's deadlines besides the timer's: the budget's end or the quantum's, whichever
    comes first."""
    hard_limit = NO_DEADLINE
    if budget_end is not None:
        hard_limit = budget_end
    if quantum_end is not None and quantum_end < hard_limit:
        hard_limit = quantum_end
    return hard_limit


def _executed_hlt(machine: "Machine") -> bool:
    """Did emu_start return because the guest executed hlt (rather than at a deadline just
    after an instruction whose last byte happens to be 0xf4)?"""
    rip = machine.rip
    if RESERVED_BASE <= rip < RESERVED_END:
        return False  # the tool's pages hold no hlt: a deadline stop in a detour buffer
    if machine.cpu.icount.last_end != rip:
        return False  # the last block did not end here: rip was reached by a jump (the idle loop's)
    if not machine.is_mapped(rip - 1) or machine.read(rip - 1, 1) != b"\xf4":
        return False
    hit = machine.image.symbols.containing(rip - 1)
    if hit is None or not hit[0].size or not hit[0].contains(rip - 1):
        return True
    sym = hit[0]
    code = machine.image.symbol_bytes(sym)  # the file's bytes: no planted int3 in the way
    for address, _size, _mn, _ops in Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite(code, sym.address):
        if address >= rip - 1:
            return address == rip - 1
    return False


class Machine:
    """An x86_64 computer running one guest image.

    `run()` runs the guest; trap handlers registered in `trap_handlers` are called from
    inside the run with the vector, and may change registers, write memory, or ask to stop
    with `stop_guest()`.

    The current CPU (the one running, or that last ran) is `cpu`; `uc`, `uch`, `clock` and
    `retired_addr` are its unicorn instance, that instance's handle for capi, its
    instruction clock and the address of that clock's counter.
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
        self.ports = Ports(self, self.serial)
        self.smp = Scheduler(self, quantum)
        #: Watchpoints and single-CPU runs for an attached debugger (the gdb stub).
        self.debug = Debugger(self)
        self.interrupts = Interrupts(self)
        self.traps = Traps(self)
        #: vector -> callable(machine) -> bool (True: handled, carry on).
        self.trap_handlers: dict[int, Callable[["Machine"], bool]] = {}
        #: Called with (machine, trap number) on a guest fault before it is reported; True
        #: means a handler dealt with it and the guest goes on (the kprobe fault path).
        self.fault_notifier: Callable[["Machine", int], bool] | None = None
        self.last_stop: StopEvent | None = None
        self.halted = False
        #: The stop a trap handler asked for (stop_guest), taken by the run loop.
        self.pending_stop: StopEvent | None = None
        #: request_stop() was called (Ctrl-C); run() clears it when it starts.
        self.stop_requested = False
        #: Called when a CPU stopped because C code set its stop word (struct icount's
        #: stop_asked) with no stop requested: a trace ring whose live output must print
        #: before its buffer overwrites the lines (tracing/_ring.c).  The run goes on.
        self.on_stop_asked: list[Callable[[], None]] = []
        #: The guest is in run() (hooks run on run_thread).
        self.running = False
        self._lock = threading.Lock()
        self._run_thread = 0
        self._run_serial = 0  # which run(): a late fallback stop must not hit the next one
        self._code_hooks: dict[int, list[tuple[Uc, int]]] = {}
        self._next_hook_token = 1
        #: A hook asked unicorn to stop (see stop_cpu).
        self._stopping = False
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
        self.userspace = user_space_for(self, programs or [], ram_size=ram_size, keep_workload=keep_workload)
        #: emu_start's `until` when no deadline falls inside a block (see UserSpace.until_never).
        self.until_never = UNTIL_NEVER
        self._boot()

    # ------------------------------------------------------------------ set-up
    def _boot(self) -> None:
        self._shared_ram: list[mmap.mmap] = []  # host buffers behind every CPU's memory (SMP)
        # Instruction counts of the translated blocks, keyed by virtual address; owned
        # here, freed with the machine.  The kernel's text is the same on every CPU, so
        # their clocks share one table; with user processes each CPU has its own, as two
        # CPUs may run two address spaces with different code at one address (the table
        # forgets a CPU's user blocks when that CPU loads CR3, see UserSpace).
        shared = BlockTable() if self.userspace is None else None
        self._block_tables = [shared or BlockTable() for _ in range(self.ncpus)]
        self.cpus: list[Cpu] = []
        for index in range(self.ncpus):
            uc = Uc(UC_ARCH_X86, UC_MODE_64)
            state = CpuState.ONLINE if index == 0 else CpuState.WAIT_FOR_SIPI
            self.cpus.append(Cpu(index, uc, InstructionClock(uc, self._block_tables[index]), state))
        self.switch_cpu(self.cpus[0])
        runs, self._image_pages = _page_runs(self.image)
        for start, size, prot in runs:
            self._map(start, size, prot)
        for seg in self.image.segments:
            self.uc.mem_write(seg.vaddr, seg.data)  # the rest of memsz (bss) is already zero
        # The tool's region: GDT + stub page, slot pages (mapped on demand), boot stack.
        self._map(RESERVED_BASE, 2 * PAGE_SIZE, UC_PROT_ALL)
        self._map(BOOT_STACK_BASE, RESERVED_END - BOOT_STACK_BASE, UC_PROT_READ | UC_PROT_WRITE)
        self._slot_pages_mapped: set[int] = set()
        gdt = struct.pack(f"<{len(GDT_ENTRIES)}Q", *GDT_ENTRIES)
        self.uc.mem_write(GDT_ADDR, gdt)
        for cpu in self.cpus:
            # Every CPU comes up in the boot state of the guest ABI: long mode, the GDT
            # loaded, IF=0.  Only the boot CPU has somewhere to go; the APs wait for their
            # startup IPI (see Scheduler.start_secondary).
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
        code_spans = [self.image.text_span]
        if self.userspace is not None:
            code_spans += self.userspace.code_spans()
        for cpu in self.cpus:
            # The hooks every CPU needs: its clock, traps and faults, port I/O.
            cpu.clock.install(code_spans)
            self.traps.install(cpu)
            self.ports.install(cpu)
        if self.userspace is not None:
            self.userspace.boot()
        self.cpu.next_tick = self.timer_period

    def _map(self, addr: int, size: int, prot: int) -> None:
        """Map guest memory on every CPU.  One CPU: unicorn's own RAM, as always.  Several:
        one anonymous host mapping per region, mapped into every instance (mem_map_ptr), so
        all CPUs share the bytes; unicorn keeps no copy of its own."""
        if self.ncpus == 1:
            self.uc.mem_map(addr, size, prot)
        else:
            ram = mmap.mmap(-1, size)  # page aligned and zero filled, as mem_map_ptr needs
            self._shared_ram.append(ram)
            ptr = ctypes.addressof(ctypes.c_char.from_buffer(ram))
            for cpu in self.cpus:
                cpu.uc.mem_map_ptr(addr, size, prot, ptr)
        self.traps.cover_memory()

    # ------------------------------------------------------------------ CPUs
    def switch_cpu(self, cpu: Cpu) -> None:
        """Make cpu the one registers, hooks' callbacks and the clock refer to (the
        scheduler does, between quanta)."""
        self.cpu = cpu
        self.uc = cpu.uc
        self.uch = cpu.uch  # the C accessors act on this CPU's instance
        self.clock = cpu.clock
        self.retired_addr = cpu.clock.retired_addr

    @property
    def cpu_id(self) -> int:
        """smp_processor_id(): the CPU that is running (or last ran, when stopped)."""
        return self.cpu.index

    @property
    def console(self) -> str:
        """Everything the guest has written to its serial console so far."""
        return self.serial.text

    # ------------------------------------------------------------------ clock
    @property
    def retired(self) -> int:
        """Guest instructions retired so far (the current CPU's clock)."""
        return _peek_u64(self.retired_addr)

    @property
    def time_ns(self) -> int:
        return _peek_u64(self.retired_addr) * NS_PER_INSN

    def count_in_detours(self, base: int, size: int) -> ctypes.Array:
        """Count the instructions of [base, base+size) that stand for guest instructions.

        The clock's hook (see _clock.c) covers the tool's pages too; this gives it the byte
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
            cpu.clock.count_in(counted, base, size)
        self._detour_counter = counted  # kept alive as long as the machine
        return counted

    # ------------------------------------------------------------------ registers
    def reg(self, name: str) -> int:
        return _reg_read(self.uch, REGISTERS[name])

    def set_reg(self, name: str, value: int) -> None:
        if name == "rip":
            self.rip_writes += 1
        _reg_write(self.uch, REGISTERS[name], value & 0xFFFFFFFFFFFFFFFF)

    def registers(self) -> dict[str, int]:
        uch = self.uch
        return {name: _reg_read(uch, REGISTERS[name]) for name in GENERAL_REGISTERS}

    @property
    def rip(self) -> int:
        return _reg_read(self.uch, _REG_RIP)

    @property
    def eflags(self) -> int:
        return _reg_read(self.uch, _REG_EFLAGS)

    # ------------------------------------------------------------------ memory
    def read(self, addr: int, size: int) -> bytes:
        try:
            return _mem_read(self.uch, addr, size)
        except _AccessError:
            if self.userspace is not None:  # a user address: through the page tables
                return self.userspace.read_virtual(addr, size)
            raise MachineError(f"cannot read {size} bytes at 0x{addr:x}: not mapped") from None

    def write(self, addr: int, data: bytes) -> None:
        try:
            _mem_write(self.uch, addr, data)
        except _AccessError:
            raise MachineError(f"cannot write {len(data)} bytes at 0x{addr:x}: not mapped") from None
        end = addr + len(data)
        if RESERVED_BASE <= addr < RESERVED_END or any(a < end and addr < b for a, b in self.image.text_ranges):
            # Code changed under the translator: drop translated blocks holding it, on
            # every CPU (each unicorn instance has its own translation cache), and the
            # clock's instruction counts of those blocks.
            for cpu in self.cpus:
                cpu.uc.ctl_remove_cache(addr, end)
            for table in dict.fromkeys(self._block_tables):
                table.forget(addr, end)

    def read_u64(self, addr: int) -> int:
        try:
            return _read_u64(self.uch, addr)
        except _AccessError:
            raise MachineError(f"cannot read 8 bytes at 0x{addr:x}: not mapped") from None

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_u64_at_reg(self, name: str, offset: int = 0) -> int:
        """The u64 at register + offset (e.g. %gs:0), in one call."""
        try:
            return capi.read_u64_at_reg(self.uch, REGISTERS[name], offset)
        except _AccessError:
            raise MachineError(f"cannot read 8 bytes at {name}+0x{offset:x}: not mapped") from None

    def exchange_top_of_stack(self, value: int) -> tuple[int, int]:
        """Replace the u64 at rsp by value; (rsp, the old value).  In one call: a
        kretprobe's entry does this on every hit."""
        try:
            return capi.exchange_top_of_stack(self.uch, _REG_RSP, value)
        except _AccessError:
            raise MachineError("cannot exchange the top of the stack: not mapped") from None

    def push_u64(self, value: int) -> None:
        """rsp -= 8; *rsp = value (stack memory: no translation-cache check)."""
        try:
            capi.push_u64(self.uch, _REG_RSP, value)
        except _AccessError:
            raise MachineError("cannot push: the stack is not mapped") from None

    def write_stack_u64(self, addr: int, value: int) -> None:
        """write_u64 for memory that holds no code (a stack slot): no translation-cache
        check, for the probe engine's hot paths."""
        try:
            _write_u64(self.uch, addr, value & 0xFFFFFFFFFFFFFFFF)
        except _AccessError:
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

    def map_tool_page(self, page: int) -> None:
        """Map one of the tool's executable pages (instruction slots, detours)."""
        if page not in self._slot_pages_mapped:
            self._map(page, PAGE_SIZE, UC_PROT_READ | UC_PROT_EXEC | UC_PROT_WRITE)
            self._slot_pages_mapped.add(page)

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
        CPU (or on the CPUs listed); returns a handle for remove_hook.  The callback sees
        the clock as of that instruction (see InstructionClock.around_hook)."""
        for watch in self.code_hook_watchers:
            watch(addr)  # e.g. a jump planted over addr would keep the guest from running it

        def go_on() -> bool:
            self._stopping = False
            callback(self)
            return not self._stopping and self.rip == addr

        hooks = []
        for cpu in self.cpus if cpus is None else [self.cpus[i] for i in cpus]:
            hooks.append((cpu.uc, cpu.uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, ud: self.clock.around_hook(a, go_on),
                                                  None, addr, addr)))
            # Blocks translated before the hook existed would not call it.
            cpu.uc.ctl_remove_cache(addr, addr + 1)
        token = self.register_hooks(hooks)
        self.hooked_addresses[token] = addr
        return token

    def add_fast_code_hook(self, begin: int, end: int, callback: Callable[[int], None]) -> int:
        """A code hook on [begin, end] called as callback(address) without unicorn's Python
        binding, which wraps every hook in two more Python frames and argument packing, a
        good part of a probe hit's cost.  In the tool's pages the clock's C hook dispatches
        to it, calling it through the C API (no new unicorn hook, so nothing is added to
        what every guest instruction costs; and no ctypes thunk, whose argument conversion
        costs about 0.1 us per hit); elsewhere it is a unicorn hook with a ctypes callback
        (and the clock as of the block's start: use add_code_hook in the text).

        The callback must not let an exception escape (ctypes would only print it): catch
        it and pass it to hook_failed(), which stops the guest and makes run() raise it,
        as unicorn does for its own hooks."""
        if RESERVED_BASE <= begin <= end < RESERVED_END:
            # Every CPU's clock gets it (the callback works on the current CPU, the one
            # running); this list keeps the callable alive for the machine's life.
            if all([cpu.clock.add_tool_hook(begin, end, callback) for cpu in self.cpus]):
                self._fast_hooks.append(callback)
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
        token = self.register_hooks(handles)
        return token

    def hook_failed(self, exc: BaseException) -> None:
        """From a fast hook: stop the guest; run() raises exc (as for unicorn's hooks)."""
        if self.uc._hook_exception is None:
            self.uc._hook_exception = exc
        self.stop_cpu()

    def register_hooks(self, hooks: list[tuple[Uc, int]]) -> int:
        """One handle for unicorn hooks added on the CPUs' instances, for remove_hook."""
        token, self._next_hook_token = self._next_hook_token, self._next_hook_token + 1
        self._code_hooks[token] = hooks
        return token

    def remove_hook(self, handle: int) -> None:
        for uc, h in self._code_hooks.pop(handle, ()):
            uc.hook_del(h)
        self.hooked_addresses.pop(handle, None)

    def stop_guest(self, event: StopEvent) -> None:
        """From a trap handler: stop the run after this trap with event as the reason.
        The stop is the CPU's stop word too (see stop_asked in _clock.c): the clock's hooks
        stop the CPU before any other hook, so no C code at a probe hit (tracing/_hit.c)
        runs while a stop is pending."""
        if self.pending_stop is None:
            self.pending_stop = event
        self.cpu.icount.stop_asked = 1
        self.stop_cpu()

    def stop_cpu(self) -> None:
        """From a hook: unicorn stops the current CPU when the hook returns (the rest of its
        block does not run now)."""
        self._stopping = True
        self.uc.emu_stop()

    # ------------------------------------------------------------------ running
    def request_stop(self) -> None:
        """Thread-safe: stop a running guest as soon as possible (Ctrl-C)."""
        self.stop_requested = True
        if not self.running:
            return
        if threading.get_ident() == self._run_thread:  # from a hook: unicorn stops at once
            self.stop_cpu()
            return
        # From another thread, the clock's hooks stop the CPU at its next block (see
        # stop_asked in _clock.c).  Code they do not see (the guest running in its data
        # pages, say) is stopped by unicorn after a moment.
        for cpu in self.cpus:
            cpu.icount.stop_asked = 1
        serial = self._run_serial

        def stop_if_still_running() -> None:
            if self.running and self._run_serial == serial:
                self.uc.emu_stop()

        fallback = threading.Timer(0.25, stop_if_still_running)
        fallback.daemon = True
        fallback.start()

    def run(self, max_insns: int | None = None) -> StopEvent:
        """Run until the guest stops; max_insns bounds the instructions retired in this run."""
        if self.running:
            raise MachineError("the guest is already running (run() called from a probe handler?)")
        if self.halted:
            return self.stop_event(StopReason.HALTED, "the guest has halted; `reset` for a fresh machine")
        if self.last_stop is not None and self.last_stop.reason in (StopReason.FAULT, StopReason.BUG):
            return self.last_stop
        self.stop_requested = False
        for cpu in self.cpus:
            cpu.icount.stop_asked = 0
        for prepare in self.before_run:
            prepare()
        budget_end = None if max_insns is None else self.clock.counter.retired + max(0, max_insns)
        with self._lock:
            self._run_thread = threading.get_ident()
            self._run_serial += 1
            self.running = True
            try:
                event = self.run_cpu(budget_end) if self.ncpus == 1 else self.smp.run(budget_end)
            finally:
                self.running = False
        self.serial.flush_partial()
        for finish in self.after_run:
            finish(event)
        self.last_stop = event
        if event.reason is StopReason.HALTED:
            self.halted = True
        return event

    def run_cpu(self, budget_end: int | None, quantum_end: int | None = None):
        """Run the current CPU until something stops the guest (a StopEvent), or, with a
        quantum_end (SMP), until its clock reaches it (QUANTUM_OVER), it gives the rest of
        its quantum up (end_quantum), or it parks in `cli; hlt` (PARKED)."""
        uc, cpu, clock, traps, smp = self.uc, self.cpu, self.clock, self.traps, self.smp
        ic = clock.counter
        # Where a deadline inside a block is (see InstructionClock.split_block), and
        # emu_start's `until` when the run must stop there by it.
        split_at = until = self.until_never
        hard_limit = _hard_limit(budget_end, quantum_end)
        ic.period = self.timer_period  # for the ticks the block hook delivers
        while True:
            if self.stop_requested:
                return self.stop_event(StopReason.INTERRUPTED, "stopped by request (Ctrl-C)")
            if budget_end is not None and ic.retired >= budget_end:
                return self.stop_event(StopReason.BUDGET, "instruction budget reached")
            if quantum_end is not None and ic.retired >= quantum_end:
                return QUANTUM_OVER
            _arm_clock(ic, cpu, hard_limit)
            traps.fault = None
            self._stopping = False
            try:
                uc.emu_start(self.rip, until)
            except UcError as exc:
                smp.quantum_given_up = False
                clock.settle(self.rip, True)  # the faulting instruction started
                traps.note_error(exc)
                if traps.notify_fault(14 if traps.fault and traps.fault[1] is not None else 6):
                    continue
                return traps.fault_event(exc)
            except BaseException:  # a hook's (hook_failed): it stopped the CPU mid-block
                clock.settle(self.rip, False)
                raise
            finally:
                ic.deadline = NO_DEADLINE
                cpu.next_tick = ic.tick  # the block hook moves a tick waiting for IF on
                stopped_at, split_at, until = split_at, self.until_never, self.until_never
            deadline = min(cpu.next_tick, hard_limit)
            asked = ic.stop_asked and not self.stop_requested
            if asked:
                _answer_stop_asked(self)
            if self.stop_requested:
                # A stop from another thread can land after the block hook counted a block
                # and before its end: before its first instruction, or after an in/out
                # (unicorn looks at stop requests after an I/O hook).
                clock.settle(self.rip, False)
            if self.pending_stop is not None:
                event, self.pending_stop = self.pending_stop, None
                smp.quantum_given_up = False
                return event
            if traps.fault is not None:
                smp.quantum_given_up = False
                clock.settle(self.rip, True)
                return traps.fault_event(None)
            if smp.quantum_given_up:
                smp.quantum_given_up = False
                return QUANTUM_OVER
            if self.stop_requested and not _executed_hlt(self):
                continue  # (a CPU that executed hlt goes to sleep first: the stop must not wake it)
            if ic.split_size:
                split_at, by_until = clock.split_block(deadline - ic.retired, stopped_at)
                if by_until:
                    until = split_at
                continue
            # At the deadline of a split, made here (split_block) or by the block hook.
            at_until = self.rip == stopped_at or (ic.split_stop != 0 and self.rip == ic.split_stop)
            if at_until and ic.retired < deadline:
                continue  # the block was reached another way, before the deadline: run on
            # A hlt that is exactly the deadline-th instruction also leaves retired ==
            # deadline: only a stop that is not after a hlt is the deadline's.
            if ic.retired >= deadline and (at_until or not _executed_hlt(self)):
                shutdown = self.interrupts.timer_tick()
                if shutdown is not None:
                    return shutdown
                continue
            if asked:
                continue  # stopped at a block's start for the stop word alone: run on
            result = self._after_hlt(budget_end, quantum_end)
            if result is not _GO_ON:
                return result

    def _after_hlt(self, budget_end: int | None, quantum_end: int | None):
        """emu_start came back on its own: the guest executed hlt.  With interrupts off (or
        no timer vector to wake it) the CPU is done: halted, or parked (SMP).  Otherwise it
        sleeps until the next tick: the clock jumps there (or to the end of the budget or
        of its quantum, when that comes first) and the run goes on (_GO_ON)."""
        try:
            after_hlt = self.read(self.rip - 1, 1) == b"\xf4"
        except MachineError:  # rip is off in no memory (a jump to a non-canonical address)
            after_hlt = False
        if not after_hlt:
            return self.stop_event(StopReason.FAULT, "the CPU stopped for no known reason")
        if not self.uc.reg_read(_REG_EFLAGS) & EFLAGS_IF:
            if quantum_end is not None:
                return PARKED
            return self.stop_event(StopReason.HALTED, "hlt with interrupts off: the machine halted")
        if not self.interrupts.timer_vector_present():
            if quantum_end is not None:
                return PARKED
            return self.stop_event(StopReason.HALTED, "hlt with interrupts on, but the guest has no timer vector")
        cpu, ic = self.cpu, self.clock.counter
        limit = budget_end
        if quantum_end is not None and (limit is None or quantum_end < limit):
            limit = quantum_end
        if limit is not None and limit < cpu.next_tick:
            ic.retired = max(ic.retired, limit)
            return _GO_ON
        ic.retired = max(ic.retired, cpu.next_tick)
        shutdown = self.interrupts.timer_tick()
        return _GO_ON if shutdown is None else shutdown

    # ------------------------------------------------------------------ stops
    def stop_event(self, reason: StopReason, message: str, *, rip: int | None = None, **kw) -> StopEvent:
        """A stop event of this machine now: where, when, in which task."""
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

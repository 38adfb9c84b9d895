"""User processes: what the machine does for a kernel that runs Linux programs in ring 3.

The bundled kernel's CONFIG_USERSPACE build (minikernel-user.elf) turns paging on, runs
static x86_64 Linux executables at CPL 3 and serves their system calls with its own code.
unicorn 2.1.4 cannot take two of the CPU's privilege switches by itself (measured, see
guest_images/README.md, "User processes"):

- `syscall` only calls UC_HOOK_INSN hooks and falls through: it never loads CS/SS from
  STAR nor jumps to LSTAR.  The hook here completes it as the CPU would (rcx = the next
  rip, r11 = rflags, rflags &= ~FMASK) and sends the CPU to the kernel's gate page, whose
  far call through a 64-bit call gate is a real switch to CPL 0 on the TSS's rsp0 stack.
  (A rip written in that hook lands 2 bytes further on: the hook writes 2 less.)
- unicorn never delivers interrupts or exceptions through the IDT.  A timer tick or a
  fault taken at CPL 3 parks rip, rflags, the vector, the error code and CR2 in the
  kernel's user_trap_info[cpu], clears IF and goes through the trap gate the same way.

The machine also puts the programs (and stdin files) in guest RAM for the kernel's disk,
fills in boot_params, counts user code with the clock, and reads user memory through the
current page tables.
"""
from __future__ import annotations

import ctypes
import shlex
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_INSN, UC_PROT_ALL, UC_PROT_READ, UC_PROT_WRITE
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from . import _clock, capi
from .events import ProgramError
from .layout import EFLAGS_IF, EFLAGS_TF, PAGE_SIZE, TIMER_VECTOR
from .program_symbols import ProgramSymbolIndex, ProgramSymbols, UserFrame

if TYPE_CHECKING:
    from .machine import Cpu, Machine

#: Guest physical memory the kernel allocates pages from: [RAM_BASE, RAM_BASE + ram_size).
RAM_BASE = 0x80000000
DEFAULT_RAM_SIZE = 256 << 20
MAX_RAM_SIZE = 2 << 30
#: Where the machine puts the programs' files and arguments for the kernel's disk.
FILES_BASE = 0x50000000
FILES_END = 0x60000000
#: User virtual addresses (uspace.h): the kernel lives low, identity-mapped.
USER_RANGES = ((0x400000, 0x40000000), (0x100000000, 0x800000000000))
MAX_PROGRAMS = 16
ARGV_BYTES = 1024
#: rflags bits the kernel's MSR_FMASK clears on a syscall: IF, TF, DF.
SYSCALL_FMASK = 0x200 | 0x100 | 0x400
_PTE_PRESENT, _PTE_PSE, _PTE_ADDR, _PTE_NX = 0x1, 0x80, 0x000FFFFFFFFFF000, 1 << 63
#: struct pt_regs (asm-offsets.h): its size and where rip (then cs, eflags, rsp) is.
_PT_REGS_SIZE, _PT_REGS_RIP = 168, 128
#: Its fields in order (include/asm-x86_64/ptrace.h).
_PT_REGS_FIELDS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
                   "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss")
#: How many of a program's frames `bt` walks at most.
MAX_USER_FRAMES = 64
_BOOT_PROGRAM = struct.Struct("<32s6Q")
_BOOT_PARAMS_HEAD = struct.Struct("<5Q")

def _find_old_exception_offset() -> int | None:
    """Where QEMU's CPUX86State.old_exception lies in a unicorn context, found by making
    one page fault happen (-1 before, 14 after)."""
    from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, Uc, UcError

    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x10000, 0x10000)
    for i, entry in enumerate((0x11000 | 3, 0x12000 | 3, 0x13000 | 3, 0x14000 | 3)):
        uc.mem_write(0x10000 + 0x1000 * i + (0 if i < 3 else 0x14 * 8), struct.pack("<Q", entry))
    uc.mem_write(0x14000, b"\x8b\x04\x25\x00\x00\x00\x00")  # mov 0x0,%eax: page 0 is absent
    uc.reg_write(X.UC_X86_REG_CR3, 0x10000)
    uc.reg_write(X.UC_X86_REG_CR4, uc.reg_read(X.UC_X86_REG_CR4) | 0x20)
    uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) | 0x80000000)
    before = bytes(uc.context_save())
    uc.hook_add(UC_HOOK_INTR, lambda uc, n, u: uc.emu_stop())
    try:
        uc.emu_start(0x14000, 0x14007, count=1)
    except UcError:
        return None
    after = bytes(uc.context_save())
    hits = [off for off in range(0, len(before) - 3, 4)
            if before[off:off + 4] == b"\xff\xff\xff\xff" and after[off:off + 4] == b"\x0e\x00\x00\x00"]
    return hits[0] if len(hits) == 1 else None


#: unicorn never delivers exceptions itself (that is do_interrupt_all's job in QEMU, which
#: also sets old_exception back to -1), so after one fault the next one is taken for a
#: fault during delivery: a double fault, then a triple fault that silently stops the CPU.
#: The machine resets it by hand after each user fault (see reset_old_exception).
_OLD_EXCEPTION_OFFSET = _find_old_exception_offset()
#: The vectors QEMU's check_exception remembers in old_exception (#DE, #TS-#GP, #PF).
_CONTRIBUTORY_OR_PF = frozenset({0, 10, 11, 12, 13, 14})
#: Each CPU's record of the trap it takes from user mode (user_trap_info in entry.S).
_TRAP_INFO_SIZE = 64
#: The clock's block hook delivers ticks itself (see install_cpu_hooks); False leaves
#: every tick to Interrupts.timer_tick, which the tests compare it with.
USER_TICKS_IN_HOOK = True


def reset_old_exception(uc) -> None:
    """The exception was delivered (to the kernel's trap gate): old_exception = -1."""
    if _OLD_EXCEPTION_OFFSET is None:
        return
    ctx = uc.context_save()
    ctypes.memmove(ctx.context.value + _OLD_EXCEPTION_OFFSET, b"\xff\xff\xff\xff", 4)
    uc.context_restore(ctx)


def drop_ram_blocks(uc, base: int, size: int) -> None:
    """Drop this CPU's translated blocks from physical [base, base+size), RAM that the
    kernel identity-maps with 2 MiB pages.  unicorn finds the physical start as an
    instruction fetch from base through the current page tables, and the kernel maps RAM
    no-execute: that fetch would raise a #PF that nobody sees (dropping nothing, and
    leaving old_exception set, see reset_old_exception).  So the entry that maps base
    loses _PAGE_NX for the call, and the TLB forgets what that lookup put in it.  (The
    CPUs take turns: no other CPU walks the shared table meanwhile.)"""
    if not uc.reg_read(X.UC_X86_REG_CR0) & 0x80000000:  # paging not on yet: no tables
        uc.ctl_remove_cache(base, base + size)
        return
    table = uc.reg_read(X.UC_X86_REG_CR3) & _PTE_ADDR
    for shift in (39, 30):
        table = struct.unpack("<Q", uc.mem_read(table + ((base >> shift) & 511) * 8, 8))[0] & _PTE_ADDR
    pmd = table + ((base >> 21) & 511) * 8
    entry = struct.unpack("<Q", uc.mem_read(pmd, 8))[0]
    if entry & _PTE_NX:
        uc.mem_write(pmd, struct.pack("<Q", entry & ~_PTE_NX))
    uc.ctl_remove_cache(base, base + size)
    if entry & _PTE_NX:
        uc.mem_write(pmd, struct.pack("<Q", entry))
        uclib.uc_ctl(uc._uch, UC_CTL_TLB_FLUSH | (UC_CTL_IO_WRITE << 30))


_uc_vmem_read = getattr(uclib, "uc_vmem_read", None)
if _uc_vmem_read is not None:
    _clock.init_vmem(ctypes.cast(_uc_vmem_read, ctypes.c_void_p).value)


class UserSpaceError(ProgramError):
    """A program the machine cannot run (not found, too many, arguments too long), or a
    user address that the current address space does not map."""


def user_space_for(machine: "Machine", programs: list["Program"], *, ram_size: int,
                   keep_workload: bool) -> "UserSpace | None":
    """The machine's user space when its kernel has one (built with CONFIG_USERSPACE: it
    has the syscall gate), else None; programs for a kernel without one are refused."""
    if machine.image.symbols.get("syscall_gate") is not None:
        return UserSpace(machine, programs, ram_size=ram_size, keep_workload=keep_workload)
    if programs:
        raise ProgramError(f"{machine.image.path}: this kernel cannot run programs "
                           "(it was not built with CONFIG_USERSPACE)")
    return None


@dataclass
class Program:
    """A host executable to run as a guest process: /bin/NAME with argv, stdin from a file."""

    path: str
    argv: list[str]
    stdin: str | None = None

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def parse(cls, line: str) -> "Program":
        """`PROGRAM [ARG...] [< FILE]`, shell-quoted."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UserSpaceError(f"exec: {exc}") from None
        stdin = None
        if "<" in words:
            at = words.index("<")
            if at + 2 != len(words):
                raise UserSpaceError("exec: `< FILE` must come last, with one file name")
            stdin, words = words[at + 1], words[:at]
        if not words:
            raise UserSpaceError("exec: which program? (exec PROGRAM [ARG...] [< FILE])")
        prog = cls(words[0], [], stdin)
        prog.argv = [prog.name] + words[1:]
        return prog


def _read_host_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UserSpaceError(f"{what} {path}: {exc.strerror}") from None


class UserSpace:
    """The machine's side of user processes, for an image built with CONFIG_USERSPACE."""

    def __init__(self, machine: "Machine", programs: list[Program], *, ram_size: int = DEFAULT_RAM_SIZE,
                 keep_workload: bool = False) -> None:
        syms = machine.image.symbols
        self.machine = machine
        self.syscall_gate = syms.get("syscall_gate").address
        self.trap_gate = syms.get("trap_gate").address
        self.trap_info = syms.get("user_trap_info").address
        self.boot_params = syms.get("boot_params").address
        if not PAGE_SIZE * 64 <= ram_size <= MAX_RAM_SIZE or ram_size % PAGE_SIZE:
            raise UserSpaceError(f"the guest RAM must be a multiple of 4 KiB from 256 KiB to 2 GiB (asked for {ram_size})")
        if len(programs) > MAX_PROGRAMS:
            raise UserSpaceError(f"at most {MAX_PROGRAMS} programs run at once (asked for {len(programs)})")
        self.programs = programs
        self.ram_size = ram_size
        self.keep_workload = keep_workload
        #: Called as notifier(machine, vector) for a trap at CPL 3 before the kernel gets
        #: it; True: dealt with (uprobes' int3 and single-step traps).
        self.trap_notifier = None
        self._files = [(_read_host_file(p.path, "exec: cannot read"),
                        _read_host_file(p.stdin, "exec: cannot read stdin file") if p.stdin else None)
                       for p in programs]
        #: The programs' own symbols (see program_symbols.py).
        self.symbols = ProgramSymbolIndex(programs, [image for image, _stdin in self._files])

    # ------------------------------------------------------------------ boot
    def setup_memory(self) -> None:
        """Map RAM and the files area; write the files, arguments and boot_params."""
        m = self.machine
        m._map(RAM_BASE, self.ram_size, UC_PROT_ALL)  # user code runs from RAM
        used = sum(len(img) + len(stdin or b"") + ARGV_BYTES + 2 * PAGE_SIZE for img, stdin in self._files)
        size = max(PAGE_SIZE, -(-used // PAGE_SIZE) * PAGE_SIZE)
        if FILES_BASE + size > FILES_END:
            raise UserSpaceError(f"the programs and their stdin files take {used} bytes: at most "
                                 f"{FILES_END - FILES_BASE} fit")
        m._map(FILES_BASE, size, UC_PROT_READ | UC_PROT_WRITE)
        at = FILES_BASE
        entries = []
        for prog, (image, stdin) in zip(self.programs, self._files):
            image_at, at = self._place(at, image)
            stdin_at, at = self._place(at, stdin) if stdin is not None else (0, at)
            blob = b"".join(a.encode() + b"\0" for a in prog.argv)
            if len(blob) > ARGV_BYTES:
                raise UserSpaceError(f"exec {prog.name}: the arguments take {len(blob)} bytes, at most {ARGV_BYTES}")
            argv_at, at = self._place(at, blob.ljust(ARGV_BYTES, b"\0"))
            name = prog.name.encode()
            if len(name) > 31 or not name:
                raise UserSpaceError(f"exec: program name {prog.name!r}: 1 to 31 bytes")
            entries.append(_BOOT_PROGRAM.pack(name, image_at, len(image), stdin_at,
                                              len(stdin) if stdin is not None else (1 << 64) - 1,
                                              argv_at, len(prog.argv)))
        head = _BOOT_PARAMS_HEAD.pack(RAM_BASE, self.ram_size, m.timer_period, len(entries), int(self.keep_workload))
        m.uc.mem_write(self.boot_params, head + b"".join(entries))

    def _place(self, at: int, data: bytes) -> tuple[int, int]:
        self.machine.uc.mem_write(at, data)
        return at, at + -(-max(len(data), 1) // PAGE_SIZE) * PAGE_SIZE

    def boot(self) -> None:
        """At the machine's boot, after its own set-up: memory, files, hooks."""
        m = self.machine
        self.setup_memory()
        for cpu in m.cpus:
            self.install_cpu_hooks(cpu)
            cpu.clock.read_virtual = self.read_virtual
        self.install_kernel_hooks()
        m.until_never = self.until_never
        m.image.symbols.fallback = self.format_user_address

    def install_cpu_hooks(self, cpu: "Cpu") -> None:
        """The syscall completion, and the clock's decoding of user code (through the page
        tables: two programs may have different code at one address; the clock's block
        hook covers it, see code_spans)."""
        uc = cpu.uc
        uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
        cpu.icount.vmem = 1
        if USER_TICKS_IN_HOOK:
            # The clock's block hook delivers a tick that is due at the start of a block
            # as enter_trap does in user code, and as Interrupts.deliver does in the kernel
            # when the frame goes to the tasks' kernel stacks (stack_pool in fork.c: data,
            # where Machine.write has no code to drop): see struct icount in _clock.c.
            cpu.icount.trap_info = self.trap_info + _TRAP_INFO_SIZE * cpu.index
            cpu.icount.trap_gate = self.trap_gate
            stacks = self.machine.image.symbols.get("stack_pool")
            if stacks is not None:
                cpu.icount.frame_lo, cpu.icount.frame_hi = stacks.address, stacks.end

    @staticmethod
    def code_spans() -> list[tuple[int, int]]:
        """Where user code runs: the clock counts it beside the kernel's text."""
        return list(USER_RANGES)

    def install_kernel_hooks(self) -> None:
        """A new address space (CR3 loaded) may hold other code at the same addresses: the
        CPU's clock forgets its counts of user blocks."""
        load_cr3 = self.machine.image.symbols.get("load_cr3")
        if load_cr3 is not None:
            self.machine.add_code_hook(load_cr3.address, self._on_load_cr3)

    def _on_load_cr3(self, machine: "Machine") -> None:
        for lo, hi in USER_RANGES:
            machine.clock.blocks.forget(lo, hi)
        if machine.ncpus > 1:
            # Each CPU is a unicorn instance with its own translation cache, which sees its
            # own writes to code but not another CPU's: a page that held a program's code
            # on this CPU may have been freed and filled with other code elsewhere (fork
            # copies a child's pages on the parent's CPU).  User pages are all in RAM, the
            # kernel's text is not: drop this CPU's blocks translated from RAM.  unicorn
            # takes the range's start through the page tables (RAM is identity-mapped in
            # every address space) and drops the physical range from there.
            drop_ram_blocks(machine.uc, RAM_BASE, self.ram_size)

    @property
    def until_never(self) -> int:
        """emu_start's `until` when no deadline is due inside a block.  unicorn drops the
        translated block at `until` on every emu_start, translating the address through the
        current page tables; one that is not mapped (the usual all-ones) raises a #PF that
        nobody sees, and leaves QEMU's old_exception set, so that the next real fault became
        a double fault.  The gate page is mapped, user-readable, in every address space,
        and its pointer data is never executed."""
        return self.trap_gate + 16

    # ------------------------------------------------------------------ privilege switches
    def user_mode(self) -> bool:
        """Is the current CPU at CPL 3?  (Asked on every trap: the C register accessor.)"""
        return self.machine.reg("cs") & 3 == 3

    def _on_syscall(self, uc, user_data) -> None:
        rip = uc.reg_read(X.UC_X86_REG_RIP)  # the syscall instruction (2 bytes)
        rflags = uc.reg_read(X.UC_X86_REG_EFLAGS)
        uc.reg_write(X.UC_X86_REG_RCX, rip + 2)
        uc.reg_write(X.UC_X86_REG_R11, rflags)
        uc.reg_write(X.UC_X86_REG_EFLAGS, rflags & ~SYSCALL_FMASK)
        uc.reg_write(X.UC_X86_REG_RIP, self.syscall_gate - 2)  # unicorn adds the 2 back

    def enter_trap(self, vector: int) -> bool:
        """An interrupt or fault at CPL 3: park it for the kernel and take the trap gate.
        (Every timer tick in user mode comes here: the C accessors, not the binding.)"""
        m = self.machine
        uch = m.uch
        rip = capi.reg_read(uch, X.UC_X86_REG_RIP)
        rflags = capi.reg_read(uch, X.UC_X86_REG_EFLAGS)
        cr2 = capi.reg_read(uch, X.UC_X86_REG_CR2) if vector == 14 else 0
        error = self._page_fault_error(cr2, rip) if vector == 14 else 0
        capi.mem_write(uch, self.trap_info + _TRAP_INFO_SIZE * m.cpu.index,
                       struct.pack("<5Q", rip, rflags, vector, error, cr2))
        if vector in _CONTRIBUTORY_OR_PF:
            reset_old_exception(m.uc)
        capi.reg_write(uch, X.UC_X86_REG_EFLAGS, rflags & ~(EFLAGS_IF | EFLAGS_TF))
        m.set_reg("rip", self.trap_gate)
        return True

    def deliver_timer(self) -> bool:
        return self.enter_trap(TIMER_VECTOR)

    def _page_fault_error(self, cr2: int, rip: int) -> int:
        """The #PF error code unicorn does not expose: present, write, user, fetch."""
        error = 4  # user mode
        if self.translate(cr2) is not None:
            error |= 1
        if cr2 == rip:
            error |= 16
        elif self._writes_memory(rip):
            error |= 2
        return error

    def _writes_memory(self, rip: int) -> bool:
        from capstone import CS_ARCH_X86, CS_MODE_64, Cs
        from capstone.x86 import X86_OP_MEM

        try:
            code = self.read_virtual(rip, 16)
        except UserSpaceError:
            return False
        md = Cs(CS_ARCH_X86, CS_MODE_64)
        md.detail = True
        for insn in md.disasm(code, rip, 1):
            return any(op.type == X86_OP_MEM and op.access & 2 for op in insn.operands) or insn.mnemonic.startswith("push")
        return False

    def user_registers(self) -> dict[str, int] | None:
        """The registers the current task left user mode with, from the struct pt_regs at
        the top of its kernel stack (system_call and user_trap_gate build it there), or
        None when the CPU is not in the kernel on behalf of a program."""
        m = self.machine
        if self.user_mode():
            return None
        try:
            regs = m.read_u64_at_reg("gs_base", 16) - _PT_REGS_SIZE  # %gs:kernelstack
            values = struct.unpack(f"<{len(_PT_REGS_FIELDS)}Q", m.read(regs, _PT_REGS_SIZE))
        except Exception:  # noqa: BLE001 - no per-CPU area or stack: no user frame
            return None
        frame = dict(zip(_PT_REGS_FIELDS, values))
        return frame if frame["cs"] & 3 == 3 else None

    def user_frame(self) -> tuple[int, int] | None:
        """(rip, rsp) where the current task left user mode (see user_registers)."""
        regs = self.user_registers()
        return (regs["rip"], regs["rsp"]) if regs is not None else None

    def current_program(self) -> ProgramSymbols | None:
        """The program the current task runs (by its comm), or None."""
        task = self.machine.tasks.current()
        return self.symbols.running(task.comm if task is not None else None)

    def user_frames(self, limit: int = MAX_USER_FRAMES) -> list[UserFrame]:
        """The program's own frames above where it left user mode (that first one not
        included): by its .eh_frame CFI, or where no CFI rule applies by the frame-pointer
        chain (the innermost frame by its prologue when it has no frame pointer).  Empty
        when the CPU is not in a system call or trap of a program."""
        regs = self.user_registers()
        prog = self.current_program()
        if regs is None or prog is None:
            return []
        frames: list[UserFrame] = []
        pc = regs["rip"]
        while len(frames) < limit:
            # A return address is looked up one byte back: the call may be the last
            # instruction of its function (noreturn callees), as gdb does.
            at = pc if not frames else pc - 1
            try:
                caller = prog.cfi_step(at, regs, self._read_user_u64)
                how = "CFI"
                if caller is None and not frames:
                    caller, how = self._frameless_step(prog, regs), "prologue"
                if caller is None:
                    caller, how = self._frame_pointer_step(regs), "frame pointer"
            except UserSpaceError:
                break
            if caller is None or not caller["rip"] or not any(lo <= caller["rip"] < hi for lo, hi in USER_RANGES):
                break
            if caller["rsp"] <= regs["rsp"] and how == "frame pointer":
                break  # the chain must go up the stack
            frames.append(UserFrame(caller["rip"], caller["rsp"], how))
            regs, pc = caller, caller["rip"]
        return frames

    def _frameless_step(self, prog: ProgramSymbols, regs: dict[str, int]) -> dict[str, int] | None:
        """The innermost frame without CFI, when its function has not set up rbp as a
        frame pointer (a leaf built with frame pointers omits it; or rip is still before
        `push %rbp; mov %rsp,%rbp`): the return address is on top of the stack, or just
        above the pushed rbp, as gdb's amd64 prologue analysis finds it."""
        hit = prog.containing(regs["rip"])
        if hit is None:
            return None
        sym, off = hit
        code = self.read_virtual(sym.address, 4)
        start = 4 if code == b"\xf3\x0f\x1e\xfa" else 0  # endbr64
        if start:
            code = self.read_virtual(sym.address + 4, 1)
        pushes_rbp = code[:1] == b"\x55"
        rsp, caller = regs["rsp"], dict(regs)
        if not pushes_rbp or off <= start:
            caller["rip"], caller["rsp"] = self._read_user_u64(rsp), rsp + 8
        elif off == start + 1:
            caller["rbp"], caller["rip"], caller["rsp"] = self._read_user_u64(rsp), self._read_user_u64(rsp + 8), rsp + 16
        else:
            return None
        return caller

    def _frame_pointer_step(self, regs: dict[str, int]) -> dict[str, int] | None:
        rbp = regs["rbp"]
        if not rbp or rbp & 7:
            return None
        caller = dict(regs)
        caller["rbp"], caller["rip"] = self._read_user_u64(rbp), self._read_user_u64(rbp + 8)
        caller["rsp"] = rbp + 16
        return caller

    def _read_user_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read_virtual(addr, 8))[0]

    # ------------------------------------------------------------------ symbols
    def format_user_address(self, addr: int, with_size: bool = True) -> str | None:
        """A user address as `sym+0x1c/0x40 [prog]`, from the symbols of the program the
        current task runs (its comm), or None."""
        if not any(lo <= addr < hi for lo, hi in USER_RANGES):
            return None
        prog = self.current_program()
        return prog.format(addr, with_size) if prog is not None else None

    def _program_symbols(self, index: int):
        """(SymbolTable, load bias) of a program, read from its file on first use."""
        prog = self.symbols[index]
        return prog.table, prog.bias

    # ------------------------------------------------------------------ memory
    def translate(self, addr: int) -> int | None:
        """The physical address of addr through the current page tables, or None."""
        m = self.machine
        cr0 = m.uc.reg_read(X.UC_X86_REG_CR0)
        if not cr0 & 0x80000000:
            return addr
        table = m.uc.reg_read(X.UC_X86_REG_CR3) & _PTE_ADDR
        for level, shift in enumerate((39, 30, 21, 12)):
            try:
                entry = struct.unpack("<Q", m.uc.mem_read(table + ((addr >> shift) & 511) * 8, 8))[0]
            except Exception:  # noqa: BLE001 - unmapped table: no translation
                return None
            if not entry & _PTE_PRESENT:
                return None
            if shift in (30, 21) and entry & _PTE_PSE:
                return (entry & _PTE_ADDR & ~((1 << shift) - 1)) | (addr & ((1 << shift) - 1))
            table = entry & _PTE_ADDR
        return table | (addr & 0xFFF)

    def kernel_page_fault(self, rip: int) -> str:
        """What a page fault the kernel took was, from CR2 and the page tables, as the
        kernel's oops line says it (arch/x86_64/mm/fault.c): `: ADDR, what`."""
        cr2 = self.machine.uc.reg_read(X.UC_X86_REG_CR2)
        access = "instruction fetch" if cr2 == rip else "data access"
        if self.translate(cr2) is None:
            return f": kernel {access} at 0x{cr2:x}, not mapped"
        if cr2 == rip and self.no_execute(cr2):
            return f": kernel instruction fetch at 0x{cr2:x}, a no-execute page (data)"
        return f": kernel {access} at 0x{cr2:x}"

    def no_execute(self, addr: int) -> bool:
        """Does _PAGE_NX forbid fetching from addr (at any level of the current tables)?"""
        uc = self.machine.uc
        table = uc.reg_read(X.UC_X86_REG_CR3) & _PTE_ADDR
        for shift in (39, 30, 21, 12):
            entry = struct.unpack("<Q", uc.mem_read(table + ((addr >> shift) & 511) * 8, 8))[0]
            if entry & _PTE_NX:
                return True
            if not entry & _PTE_PRESENT or (shift in (30, 21) and entry & _PTE_PSE):
                return False
            table = entry & _PTE_ADDR
        return False

    def pte_of(self, pgd: int, addr: int) -> int | None:
        """Where the last-level entry (PTE) for addr lies in the page tables at pgd (a
        physical address), or None when a table on the way is absent or a large page."""
        uc = self.machine.uc
        table = pgd & _PTE_ADDR
        for shift in (39, 30, 21):
            entry = struct.unpack("<Q", uc.mem_read(table + ((addr >> shift) & 511) * 8, 8))[0]
            if not entry & _PTE_PRESENT or entry & _PTE_PSE:
                return None
            table = entry & _PTE_ADDR
        return table + ((addr >> 12) & 511) * 8

    def write_virtual(self, addr: int, data: bytes) -> None:
        """Write through the current process's page tables (stack words, not code)."""
        done = 0
        while done < len(data):
            at = addr + done
            phys = self.translate(at)
            if phys is None:
                raise UserSpaceError(f"0x{at:x} is not mapped in the current address space")
            n = min(len(data) - done, PAGE_SIZE - (at & 0xFFF))
            self.machine.uc.mem_write(phys, data[done:done + n])
            done += n

    def read_virtual(self, addr: int, size: int) -> bytes:
        """Read through the current process's page tables, a page at a time."""
        out = bytearray()
        while len(out) < size:
            at = addr + len(out)
            phys = self.translate(at)
            if phys is None:
                raise UserSpaceError(f"0x{at:x} is not mapped in the current address space")
            n = min(size - len(out), PAGE_SIZE - (at & 0xFFF))
            out += self.machine.uc.mem_read(phys, n)
        return bytes(out)

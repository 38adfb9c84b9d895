"""The machine's memory map: what the tool reserves for itself.

There is no paging: guest virtual addresses are physical addresses, and unicorn cannot
fetch from high (kernel-style 0xffffffff8...) addresses without page tables, so images are
linked low (the bundled kernel at 1 MiB, user programs at 4 MiB).  The tool keeps one region
above them, inside +-2 GiB of any image linked below it, so that an instruction copied into
a slot can still reach its RIP-relative target with a 32-bit displacement.
"""

PAGE_SIZE = 0x1000

#: [RESERVED_BASE, RESERVED_END): the tool's own pages; no image segment may overlap them.
RESERVED_BASE = 0x40000000
RESERVED_END = 0x41000000

#: Global descriptor table: null, 64-bit code (selector 0x08), data (selector 0x10).
GDT_ADDR = RESERVED_BASE
KERNEL_CS = 0x08
KERNEL_DS = 0x10
GDT_ENTRIES = (0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)

#: Code the machine provides when the image lacks it (a kretprobe trampoline, ...).
STUB_PAGE = RESERVED_BASE + 0x1000

#: Instruction slots for probes (kernel: get_insn_slot's pages).
INSN_SLOT_BASE = RESERVED_BASE + 0x10000
INSN_SLOT_END = RESERVED_BASE + 0x200000

#: Jump-optimized probes (the kernel's optprobes, 2.6.36): the probed instructions are
#: replaced by `jmp rel32` to a detour entry, so everything here must stay within +-2 GiB of
#: the image.  Entries [DETOUR_ENTRY_BASE, DETOUR_BASE) are one `jmp` each, the address the
#: engine's hook fires on; detour buffers [DETOUR_BASE, DETOUR_END) hold the relocated
#: copies of the replaced instructions and the jump back.
DETOUR_ENTRY_BASE = RESERVED_BASE + 0x200000
DETOUR_BASE = RESERVED_BASE + 0x210000
DETOUR_END = RESERVED_BASE + 0x400000

#: The stack the machine sets up before jumping to the entry point (1 MiB, grows down).
BOOT_STACK_BASE = RESERVED_END - 0x100000
BOOT_STACK_TOP = RESERVED_END - 0x10

#: x86 EFLAGS bits the probe engine and the timer care about.
EFLAGS_TF = 1 << 8
EFLAGS_IF = 1 << 9

#: The vector the periodic timer is delivered on (IRQ 0 remapped, as Linux does).
TIMER_VECTOR = 0x20

#: Serial console (COM1) transmit register and line status register.
SERIAL_PORT = 0x3F8
SERIAL_LSR = SERIAL_PORT + 5

#: SMP: the machine's CPU startup port (not a PC port).  `inl` from it gives the number of
#: CPUs; `outl` of the address of a struct ap_boot_params { u64 cpu, rip, rsp, gs_base }
#: starts that AP (the INIT/SIPI sequence, done by the host).
SMP_STARTUP_PORT = 0x4F0

#: SMP: instructions each CPU runs in its turn (round robin).  Small enough that CPUs
#: interleave inside functions, large enough that switching costs little.
SMP_QUANTUM = 1000

#: The most CPUs a machine has (the bundled kernel's NR_CPUS).
MAX_CPUS = 4

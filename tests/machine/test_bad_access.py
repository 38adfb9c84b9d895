"""Bad memory accesses: each kind is reported with its address, and the hooks that see
them cover only where such a fault can happen, never writable memory, on every CPU and
after every mapping (see bad_access_ranges in machine/traps.py).

Guest: tests/guests/bad_access.c; the test writes `access_kind` before running.
"""
from __future__ import annotations

import pytest
from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_MEM_FETCH_PROT,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from kprobe_shell import Machine, StopReason
from kprobe_shell.machine.layout import BOOT_STACK_BASE, INSN_SLOT_BASE, RESERVED_END
from kprobe_shell.machine.machine import Machine as MachineAlone
from kprobe_shell.machine.traps import bad_access_ranges, fetch_fault_address

UNMAPPED = UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED


@pytest.fixture(scope="module")
def bad_access(build_guest):
    return build_guest("bad_access")


def run_kind(path, kind, **kw):
    m = MachineAlone(path, **kw)
    m.write(m.image.symbols["access_kind"].address, kind.to_bytes(8, "little"))
    return m, m.run(max_insns=1_000_000)


@pytest.mark.parametrize("kind, message, where", [
    (1, "read from unmapped memory at 0x10", 0x10),
    (2, "write to unmapped memory at 0x18", 0x18),
    (3, "execute from unmapped memory at 0x20000000", 0x20000000),
    (4, "write to read-only memory at ", "ro_word"),
    (5, "execute from non-executable memory at ", "ro_code"),
    (6, "execute from non-executable memory at ", "rw_code"),
])
def test_each_kind_of_bad_access_names_its_address(bad_access, kind, message, where):
    m, ev = run_kind(bad_access, kind)
    address = where if isinstance(where, int) else m.image.symbols[where].address
    assert ev.reason is StopReason.FAULT
    assert ev.message == (message if isinstance(where, int) else f"{message}0x{address:x}")
    assert ev.fault_address == address
    assert m.console == "bad_access start\n"


def test_a_fetch_from_the_stack_is_reported_at_rip(bad_access):
    """The boot stack is writable: no hook covers it, the address comes from rip."""
    m, ev = run_kind(bad_access, 7)
    assert ev.reason is StopReason.FAULT
    assert BOOT_STACK_BASE <= ev.rip < RESERVED_END
    assert ev.fault_address == ev.rip
    assert ev.message == f"execute from non-executable memory at 0x{ev.rip:x}"


@pytest.mark.parametrize("kind", [1, 2, 3, 4, 5, 6, 7])
def test_the_fault_path_is_offered_a_page_fault_for_every_memory_kind(bad_access, kind):
    m = MachineAlone(bad_access)
    m.write(m.image.symbols["access_kind"].address, kind.to_bytes(8, "little"))
    offered = []
    m.fault_notifier = lambda machine, trapnr: offered.append(trapnr) and False
    assert m.run(max_insns=1_000_000).reason is StopReason.FAULT
    assert offered == [14]


# ---------------------------------------------------------------------------- coverage
def check_cover(m) -> None:
    """Every CPU's hooks are bad_access_ranges of the map: the unmapped kinds exactly on
    the gaps, no kind on writable memory."""
    regions = sorted(m.uc.mem_regions())
    expected = bad_access_ranges(regions)
    for cpu in m.cpus:
        assert m.traps.covered(cpu) == expected
        assert sorted(cpu.uc.mem_regions()) == regions
    writable = [(f, l) for f, l, prot in regions if prot & UC_PROT_WRITE]
    gaps = [(f, l) for f, l, kind in expected if kind & UNMAPPED]
    for first, last, kind in expected:
        assert not any(first <= wl and wf <= last for wf, wl in writable), (hex(first), hex(last))
        assert (kind & UNMAPPED) in (0, UNMAPPED)
    mapped = sum(l - f + 1 for f, l, _ in regions)
    assert sum(l - f + 1 for f, l in gaps) + mapped == 1 << 64


def test_the_hooks_follow_every_mapping(bad_access):
    m = MachineAlone(bad_access)
    check_cover(m)
    m.map_tool_page(INSN_SLOT_BASE)
    m.map_tool_page(INSN_SLOT_BASE + 0x3000)
    check_cover(m)
    assert m.run(max_insns=1_000_000).reason is StopReason.HALTED


def test_the_hooks_on_every_cpu_of_the_smp_kernel(kernel_path):
    m = Machine(cpus=2)
    check_cover(m)
    m.map_tool_page(INSN_SLOT_BASE)
    check_cover(m)


def test_ranges_of_a_map():
    regions = [(0x1000, 0x1fff, UC_PROT_READ | 4), (0x2000, 0x2fff, UC_PROT_READ),
               (0x3000, 0x3fff, UC_PROT_READ | UC_PROT_WRITE), (0x4000, 0x4fff, UC_PROT_ALL)]
    assert bad_access_ranges(regions) == [
        (0, 0xfff, UNMAPPED),
        (0x1000, 0x1fff, UC_HOOK_MEM_WRITE_PROT),
        (0x2000, 0x2fff, UC_HOOK_MEM_WRITE_PROT | UC_HOOK_MEM_FETCH_PROT),
        (0x5000, (1 << 64) - 1, UNMAPPED),
    ]
    assert bad_access_ranges([(0, (1 << 64) - 1, UC_PROT_ALL)]) == []


# ---------------------------------------------------------------------------- against unicorn
NOPS_TO = lambda n: b"\x90" * n  # noqa: E731


@pytest.mark.parametrize("start, code", [
    (0x1000, b"\x48\xc7\xc0\x10\x20\x00\x00\xff\xe0"),  # mov $0x2010, %rax; jmp *%rax
    (0x1ff0, NOPS_TO(16)),                              # runs off the executable page
    (0x1ff8, NOPS_TO(4) + b"\x48\xb8\x11\x11"),         # movabs straddling the page end
])
def test_the_fetch_address_is_the_one_unicorn_gives_its_hook(start, code):
    """Where no hook sees a fetch from non-executable memory, fetch_fault_address finds
    the address unicorn passes to a hook that covers it."""
    def run(hooked):
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.mem_map(0x1000, 0x1000, UC_PROT_ALL)
        uc.mem_map(0x2000, 0x1000, UC_PROT_READ | UC_PROT_WRITE)
        uc.mem_write(start, code)
        seen = []
        if hooked:
            uc.hook_add(UC_HOOK_MEM_FETCH_PROT, lambda uc, a, address, s, v, u: seen.append(address) and False)
        with pytest.raises(UcError):
            uc.emu_start(start, (1 << 64) - 1)
        return uc, seen

    _uc, seen = run(True)
    uc, _ = run(False)
    assert seen and fetch_fault_address(uc.mem_regions(), uc.reg_read(X.UC_X86_REG_RIP)) == seen[0]

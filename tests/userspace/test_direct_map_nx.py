"""The kernel's own mappings are no-execute where they hold only data, as
arch/x86_64/mm/init.c maps the direct mapping of RAM (phys_pud_init, _PAGE_NX): the
page-table walk shows it, and a kernel jump into data is a page fault with a clear
message.  Code still runs where it lives: the kernel's text, and the machine's slots,
detours and kretprobe stub (the probe tests run there)."""
from __future__ import annotations

import pytest

from kprobe_shell import Machine, Program, StopReason
from kprobe_shell.machine.layout import (BOOT_STACK_BASE, DETOUR_BASE, DETOUR_END, INSN_SLOT_BASE,
                                         RESERVED_BASE, STUB_PAGE)
from kprobe_shell.machine.userspace import FILES_BASE, RAM_BASE


def _in_sys_write(build_program, cpus: int = 1) -> Machine:
    """A machine stopped at the first sys_write of a program, in the kernel."""
    path = build_program("hello", "glibc")
    m = Machine(programs=[Program(path, ["hello"])], cpus=cpus)
    m.add_code_hook(m.symbols["sys_write"].address, lambda mm: mm.request_stop())
    ev = m.run(max_insns=100_000_000)
    assert ev.reason is not StopReason.HALTED and m.rip == m.symbols["sys_write"].address, ev
    assert not m.userspace.user_mode()
    return m


@pytest.mark.parametrize("cpus", [1, 2])
def test_only_code_is_executable_in_the_kernel_mappings(build_program, cpus):
    m = _in_sys_write(build_program, cpus)
    us, syms = m.userspace, m.symbols
    text = syms["_text"].address, syms["_etext"].address
    code = [text[0], text[1] - 1, syms["sys_write"].address, syms["kretprobe_trampoline"].address,
            RESERVED_BASE, STUB_PAGE, INSN_SLOT_BASE, DETOUR_BASE, DETOUR_END - 1]
    data = [syms["_etext"].address + 0x1000, syms["boot_params"].address, syms["stack_pool"].address,
            syms["_end"].address - 1, 0x200000, DETOUR_END, BOOT_STACK_BASE, FILES_BASE,
            RAM_BASE, RAM_BASE + us.ram_size - 1, 0xFFFFF000]
    # (on 2 CPUs, after address-space switches that dropped RAM's blocks: see drop_ram_blocks)
    assert [hex(a) for a in code if us.no_execute(a)] == []
    assert [hex(a) for a in data if not us.no_execute(a)] == []


@pytest.mark.parametrize("where", ["ram", "files", "kernel data"])
def test_a_kernel_jump_into_data_is_a_page_fault_that_says_so(build_program, where):
    m = _in_sys_write(build_program)
    target = {"ram": RAM_BASE + m.userspace.ram_size - 0x1000, "files": FILES_BASE,
              "kernel data": m.symbols["boot_params"].address}[where]
    if where == "ram":
        m.uc.mem_write(target, b"\x90\xc3")  # nop; ret: it would run
    m.set_reg("rip", target)
    ev = m.run(max_insns=1000)
    assert ev.reason is StopReason.FAULT
    assert ev.message == f"page fault (#PF): kernel instruction fetch at 0x{target:x}, a no-execute page (data)"
    assert ev.rip == target


def test_a_kernel_fetch_from_an_unmapped_page_says_so(build_program):
    m = _in_sys_write(build_program)
    m.set_reg("rip", 0x10)  # page 0 is never mapped
    ev = m.run(max_insns=1000)
    assert ev.reason is StopReason.FAULT
    assert ev.message == "page fault (#PF): kernel instruction fetch at 0x10, not mapped"

"""The machine's C accessors, for the probe engine's hot paths: one public object.

    from kprobe_shell.machine import capi
    capi.reg_read(machine.uch, regid)

unicorn's Python binding costs microseconds per register or memory access, more than a
probe hit should; these call unicorn's uc_reg_read/uc_reg_write/uc_mem_read/uc_mem_write
directly (see _accessors.c).  Each takes the handle of the unicorn instance to act on:
`Machine.uch`, the running CPU's.  Integers are taken modulo 2**64.  A failed access
raises capi.AccessError (unicorn's error code, what was tried, where); Machine's own
methods turn it into a MachineError.

    reg_read(uch, regid) -> int                reg_write(uch, regid, value)
    mem_read(uch, address, size) -> bytes      mem_write(uch, address, data)
    read_u64(uch, address) -> int              write_u64(uch, address, value)
    read_u64_at_reg(uch, regid, offset) -> int: the u64 at register + offset (%gs:0)
    exchange_top_of_stack(uch, rsp_regid, value) -> (rsp, old): a kretprobe's entry
    push_u64(uch, rsp_regid, value): rsp -= 8; *rsp = value
    peek_u64(address) -> int: a u64 in this process (a clock's counter, Machine.retired_addr)

Writes to code through these skip the translation-cache flush Machine.write does: use
them on data and stacks only.
"""
from __future__ import annotations

import ctypes

from unicorn.unicorn_py3.unicorn import uclib

from . import _accessors

_accessors.init(*(ctypes.cast(fn, ctypes.c_void_p).value
                  for fn in (uclib.uc_reg_read, uclib.uc_reg_write, uclib.uc_mem_read, uclib.uc_mem_write)))

reg_read = _accessors.reg_read
reg_write = _accessors.reg_write
mem_read = _accessors.mem_read
mem_write = _accessors.mem_write
read_u64 = _accessors.read_u64
write_u64 = _accessors.write_u64
read_u64_at_reg = _accessors.read_u64_at_reg
exchange_top_of_stack = _accessors.exchange_top_of_stack
push_u64 = _accessors.push_u64
peek_u64 = _accessors.peek_u64
AccessError = _accessors.UcAccessError

__all__ = [
    "AccessError", "exchange_top_of_stack", "mem_read", "mem_write", "peek_u64", "push_u64",
    "read_u64", "read_u64_at_reg", "reg_read", "reg_write", "write_u64",
]

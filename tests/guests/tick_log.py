"""The timer ticks a machine delivers, recorded as (cpu, clock, rip) at each delivery."""
from __future__ import annotations


def tick_log(m) -> list:
    log = []
    deliver = m.interrupts.deliver

    def record(vector):
        log.append((m.cpu.index, m.cpu.icount.retired, m.rip))
        return deliver(vector)

    m.interrupts.deliver = record
    return log

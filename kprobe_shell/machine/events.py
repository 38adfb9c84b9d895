"""What a run of the machine reports (StopReason, StopEvent) and what it refuses
(MachineError): the types every part of the machine shares."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class MachineError(Exception):
    """A request the machine cannot honour (bad address, not stopped, ...)."""


class ProgramError(MachineError):
    """A program the machine was asked to run that it cannot (see userspace.py): the
    request is wrong, not the image."""


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

"""The public Python surface: a machine with the kernel's probe API on it.

    from kprobe_shell import Machine, Kprobe, Jprobe, Kretprobe

    m = Machine()                       # the bundled minikernel
    kp = Kprobe(symbol_name="do_fork", pre_handler=lambda p, regs: print(regs.task.comm))
    m.register_kprobe(kp)
    m.run()
    print(m.console, kp.hits, kp.nmissed)

Handlers get (p, regs) like the kernel's: regs reads and writes the trapped CPU's
registers by name (regs.rax, regs.rip, regs.di ...), and has read(), read_string(),
read_u64(), arg(n) and task (the current task).
"""
from __future__ import annotations

import os

from unicorn import UcError

from .display import Displayed
from .images import bundled_image_path, bundled_kernel
from .kprobes.core import AggrKprobe, HandlerError, Kprobe, KprobeEngine
from .kprobes.jprobes import Jprobe
from .kprobes.kretprobes import Kretprobe, KretprobeInstance
from .kprobes.x86 import ProbeError
from .machine import Image, ImageError, MachineError, StopEvent, StopReason
from .machine.machine import Machine as _BareMachine
from .machine.events import ProgramError
from .machine.machine import check_machine_config
from .machine.userspace import DEFAULT_RAM_SIZE, Program
from .uprobes.types import Uprobe, Uretprobe

__all__ = [
    "AggrKprobe", "HandlerError", "Image", "ImageError", "Jprobe", "Kprobe", "Kretprobe",
    "KretprobeInstance", "Machine", "MachineError", "ProbeError", "Program", "StopEvent", "StopReason",
    "Uprobe", "Uretprobe",
]


class Machine(_BareMachine, Displayed):
    """An emulated x86_64 machine running a guest image, with the kprobes engine on it."""

    def __init__(self, image: str | Image | None = None, *, timer_period: int = 5000, cpus: int = 1,
                 quantum: int | None = None, programs: list[Program | str] | None = None,
                 ram_size: int = DEFAULT_RAM_SIZE, keep_workload: bool = False):
        extra = {} if quantum is None else {"quantum": quantum}
        check_machine_config(timer_period=timer_period, cpus=cpus, **extra)
        programs = [Program.parse(p) if isinstance(p, str) else p for p in programs or []]
        if programs:
            extra.update(programs=programs, ram_size=ram_size, keep_workload=keep_workload)
        if image is None:
            # The bundled kernel comes as a 2.6 kernel did: a UP build, an SMP build
            # (CONFIG_SMP) that brings up the other CPUs, each with user space
            # (CONFIG_USERSPACE) when programs run.
            image = bundled_image_path(bundled_kernel(cpus, bool(programs)))
        try:
            super().__init__(image, timer_period=timer_period, cpus=cpus, **extra)
            self.kprobes = KprobeEngine(self)
        except ProgramError:
            raise  # the programs asked for are wrong, not the image
        except (MachineError, ProbeError, UcError) as exc:
            # An image that passes the ELF checks but whose symbols point nowhere
            # (task_struct_layout in unmapped memory, say) raised MachineError from the
            # boot; it is the image that is broken, so say so.
            path = image.path if isinstance(image, Image) else image
            raise ImageError(f"{path}: the machine cannot boot this image: {exc}") from None

    def __repr__(self) -> str:
        return f"<Machine {os.path.basename(self.image.path)}: rip 0x{self.rip:x}, {self.time_ns} instructions>"

    @property
    def symbols(self):
        return self.image.symbols

    def request_stop(self) -> None:
        """Thread-safe (Ctrl-C): stop the guest, and end a probe handler running now."""
        super().request_stop()
        kprobes = getattr(self, "kprobes", None)
        if kprobes is not None:
            kprobes.guard.interrupt()

    @property
    def uprobes(self):
        """The uprobes engine (made on first use: a machine without uprobes hooks nothing)."""
        engine = self.__dict__.get("_uprobes")
        if engine is None:
            from .uprobes.core import UprobeEngine

            engine = self.__dict__["_uprobes"] = UprobeEngine(self)
        return engine

    def register_uprobe(self, up: Uprobe) -> Uprobe:
        return self.uprobes.register(up)

    def unregister_uprobe(self, up: Uprobe) -> None:
        self.uprobes.unregister(up)

    register_uretprobe = register_uprobe
    unregister_uretprobe = unregister_uprobe

    # The kernel's API, by its names.
    def register_kprobe(self, p: Kprobe) -> Kprobe:
        return self.kprobes.register_kprobe(p)

    def unregister_kprobe(self, p: Kprobe) -> None:
        self.kprobes.unregister_kprobe(p)

    def register_jprobe(self, jp: Jprobe) -> Jprobe:
        return self.kprobes.jprobes.register_jprobe(jp)

    def unregister_jprobe(self, jp: Jprobe) -> None:
        self.kprobes.jprobes.unregister_jprobe(jp)

    def register_kretprobe(self, rp: Kretprobe) -> Kretprobe:
        return self.kprobes.kretprobes.register_kretprobe(rp)

    def unregister_kretprobe(self, rp: Kretprobe) -> None:
        self.kprobes.kretprobes.unregister_kretprobe(rp)

    def register(self, probe):
        """Register any probe object by its kind."""
        if isinstance(probe, Uprobe):
            return self.register_uprobe(probe)
        if isinstance(probe, Jprobe):
            return self.register_jprobe(probe)
        if isinstance(probe, Kretprobe):
            return self.register_kretprobe(probe)
        return self.register_kprobe(probe)

    def unregister(self, probe) -> None:
        if isinstance(probe, Uprobe):
            self.unregister_uprobe(probe)
        elif isinstance(probe, Jprobe):
            self.unregister_jprobe(probe)
        elif isinstance(probe, Kretprobe):
            self.unregister_kretprobe(probe)
        else:
            self.unregister_kprobe(probe)

    def disable_probe(self, probe) -> None:
        if isinstance(probe, Uprobe):
            probe.disabled = True  # its handlers are skipped: the breakpoint stays, hits are not counted
            return
        self.kprobes.disable(getattr(probe, "kp", probe))

    def enable_probe(self, probe) -> None:
        if isinstance(probe, Uprobe):
            probe.disabled = False
            return
        self.kprobes.enable(getattr(probe, "kp", probe))

"""kprobe-shell: Linux 2.6 kprobes, jprobes and kretprobes on an emulated x86_64 machine."""
__version__ = "0.1.0"

from .api import (  # noqa: E402
    HandlerError,
    Image,
    ImageError,
    Jprobe,
    Kprobe,
    Kretprobe,
    Machine,
    MachineError,
    ProbeError,
    StopEvent,
    StopReason,
)

__all__ = [
    "HandlerError", "Image", "ImageError", "Jprobe", "Kprobe", "Kretprobe", "Machine",
    "MachineError", "ProbeError", "StopEvent", "StopReason",
]

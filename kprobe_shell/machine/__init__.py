"""The emulated x86_64 machine: image loading, vCPUs, memory, console, clock and timer
(see machine.py for its parts), and its C accessors (capi)."""
from . import capi
from .devices import Console
from .events import MachineError, StopEvent, StopReason
from .abi import Parameter
from .image import Image, ImageError, Symbol, SymbolTable
from .machine import Machine
from .tasks import Task

__all__ = [
    "Console", "Image", "ImageError", "Machine", "MachineError", "Parameter",
    "StopEvent", "StopReason", "Symbol", "SymbolTable", "Task", "capi",
]

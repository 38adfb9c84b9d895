"""The emulated x86_64 machine: image loading, vCPU, memory, console, clock and timer."""
from .image import Image, ImageError, Parameter, Symbol, SymbolTable
from .machine import Console, Machine, MachineError, StopEvent, StopReason
from .tasks import Task

__all__ = [
    "Console", "Image", "ImageError", "Machine", "MachineError", "Parameter",
    "StopEvent", "StopReason", "Symbol", "SymbolTable", "Task",
]

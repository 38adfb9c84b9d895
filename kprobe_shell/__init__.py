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
    Program,
    StopEvent,
    StopReason,
    Uprobe,
    Uretprobe,
)

from . import handlers  # noqa: E402  - the handler-file API: kprobe_shell.handlers
from .handlers import jprobe, kprobe, kretprobe, uprobe, uretprobe  # noqa: E402

__all__ = [
    "handlers", "jprobe", "kprobe", "kretprobe", "uprobe", "uretprobe",
    "HandlerError", "Image", "ImageError", "Jprobe", "Kprobe", "Kretprobe", "Machine",
    "MachineError", "ProbeError", "Program", "StopEvent", "StopReason", "Uprobe", "Uretprobe",
]


def load_ipython_extension(ipython) -> None:
    """`%load_ext kprobe_shell` in IPython or Jupyter: the %kps and %%kps magics (see
    kprobe_shell.notebook; needs the `notebook` extra)."""
    from .notebook import load_ipython_extension as load

    load(ipython)

"""The shell's commands, one module per group; importing this registers them all."""
from . import (aggregations, events, gdbdata, gdbserver, handlers, inspect, misc, perfprobe, probes,  # noqa: F401
               running, teaching, tutorial, uprobes)

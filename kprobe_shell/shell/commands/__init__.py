"""The shell's commands, one module per group; importing this registers them all."""
from . import aggregations, events, gdbdata, gdbserver, handlers, inspect, misc, perfprobe, probes, running, teaching, tutorial  # noqa: F401

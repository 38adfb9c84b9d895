"""The shell's commands, one module per group; importing this registers them all."""
from . import aggregations, events, gdbserver, handlers, inspect, misc, perfprobe, probes, running, teaching, tutorial, uprobes  # noqa: F401,E501

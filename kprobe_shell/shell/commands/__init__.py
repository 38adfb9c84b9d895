"""The shell's commands, one module per group; importing this registers them all."""
from . import events, inspect, misc, probes, running, teaching  # noqa: F401

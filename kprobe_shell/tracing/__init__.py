"""ftrace-style dynamic tracing for kprobe-shell.

probe_events parses kprobe_events lines (Linux Documentation/trace/kprobetrace.rst);
fetch evaluates and formats their fetch arguments against the emulated guest.
"""

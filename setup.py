# The only reason this file exists: setuptools needs it to declare the C extensions.
# Everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(
    ext_modules=[
        # The instruction clock's hooks (see kprobe_shell/machine/clock.py).
        Extension("kprobe_shell.machine._clock", ["kprobe_shell/machine/_clock.c"]),
        # Register and memory accessors (see kprobe_shell/machine/capi.py).
        Extension("kprobe_shell.machine._accessors", ["kprobe_shell/machine/_accessors.c"]),
        # The handler guard's insistent trace function (see kprobe_shell/kprobes/guard.py).
        Extension("kprobe_shell.kprobes._insist", ["kprobe_shell/kprobes/_insist.c"]),
        # The kprobe state the C probe hit shares with Python (see kprobe_shell/kprobes/_kstate.c).
        Extension("kprobe_shell.kprobes._kstate", ["kprobe_shell/kprobes/_kstate.c"],
                  depends=["kprobe_shell/kprobes/kstate.h"]),
        # The trace buffer's ring of event records (see kprobe_shell/tracing/ringbuf.h).
        Extension("kprobe_shell.tracing._ring", ["kprobe_shell/tracing/_ring.c"],
                  depends=["kprobe_shell/tracing/ringbuf.h"]),
        # bpftrace-style maps' state, updated from C at the probe hit (see kprobe_shell/tracing/cmaps.h).
        Extension("kprobe_shell.tracing._maps", ["kprobe_shell/tracing/_maps.c"],
                  depends=["kprobe_shell/tracing/cmaps.h"]),
        # Probe events' fetch programs and hits recorded in C (see kprobe_shell/tracing/cfetch.py).
        Extension("kprobe_shell.tracing._hit", ["kprobe_shell/tracing/_hit.c"],
                  include_dirs=["kprobe_shell/tracing", "kprobe_shell/kprobes"],
                  depends=["kprobe_shell/tracing/ringbuf.h", "kprobe_shell/tracing/cmaps.h",
                           "kprobe_shell/kprobes/kstate.h"]),
    ]
)

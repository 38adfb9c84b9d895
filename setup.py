# The only reason this file exists: setuptools needs it to declare the C extensions.
# Everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kprobe_shell.machine._icount", ["kprobe_shell/machine/_icount.c"]),
        Extension("kprobe_shell.kprobes._insist", ["kprobe_shell/kprobes/_insist.c"]),
    ]
)

# The only reason this file exists: setuptools needs it to declare the C extension.
# Everything else is in pyproject.toml.
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kprobe_shell.machine._icount", ["kprobe_shell/machine/_icount.c"]),
    ]
)

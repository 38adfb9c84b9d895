"""Fixtures for driving the real shell: a small user image and a runner for batch mode."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

USER_PROGRAM = textwrap.dedent(r"""
    static inline void outb(unsigned short port, unsigned char v) { __asm__ volatile("outb %0,%1" :: "a"(v), "Nd"(port)); }
    static void puts_serial(const char *s) { while (*s) outb(0x3f8, *s++); }
    volatile long counter;
    __attribute__((noinline)) long leaf(long x) { counter += x; return x * 3 - 7; }
    __attribute__((noinline)) long walk(int depth) { return depth <= 0 ? leaf(depth) : walk(depth - 1) + leaf(depth); }
    void _start(void) {
        long total = 0;
        for (int i = 0; i < 5; i++) total += walk(3);
        puts_serial(total == 5 * (walk(3) ) ? "walk ok\n" : "walk odd\n");
        puts_serial("user image done\n");
        __asm__ volatile("cli; hlt");
    }
""")



@pytest.fixture(scope="session")
def build_c_image(tmp_path_factory):
    """build_c_image(name, source, extra=()) -> the path of a one-file C guest with DWARF,
    compiled as the test guests are (tests/guests/guestbuild.py)."""
    import guestbuild

    def build(name: str, source: str, extra: tuple[str, ...] = ()) -> str:
        d = tmp_path_factory.mktemp(name)
        src = d / f"{name}.c"
        src.write_text(source)
        return str(guestbuild.compile_guest(src, d / f"{name}.elf", debug=True, extra=extra))

    return build


@pytest.fixture(scope="session")
def user_image(build_c_image) -> str:
    # frame pointers and real calls: `bt` and `finish` have frames to walk
    return build_c_image("walker", USER_PROGRAM, extra=("-fno-omit-frame-pointer", "-fno-optimize-sibling-calls"))


@pytest.fixture
def run_shell():
    """Run `python -m kprobe_shell ARGS` and return the CompletedProcess."""
    return _run_shell


def _run_shell(*args: str, stdin: str | None = None, env_extra: dict | None = None, tmp_home: str | None = None):
    env = dict(os.environ)
    if tmp_home:
        env["XDG_CONFIG_HOME"] = os.path.join(tmp_home, "config")
        env["XDG_DATA_HOME"] = os.path.join(tmp_home, "data")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "kprobe_shell", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=120)


# ---------------------------------------------------------------------- reading the shell's output
TRACE_LINE = re.compile(r"^\s*(?P<comm>\S+)-(?P<pid>\d+)\s+\[(?P<cpu>\d{3})\]\s+(?P<time>\d+\.\d{9}): "
                        r"(?P<event>\w+): \((?P<where>[^)]*)\)(?P<args>.*)$")
ARG = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_trace(stdout: str, event: str | None = None) -> list[dict]:
    """Trace lines of the shell's text output: comm, pid, event, where and args (as printed)."""
    out = []
    for line in stdout.splitlines():
        m = TRACE_LINE.match(line)
        if m and (event is None or m.group("event") == event):
            d = m.groupdict()
            d["pid"] = int(d["pid"])
            d["args"] = dict(ARG.findall(d["args"]))
            out.append(d)
    return out


@pytest.fixture
def trace_of():
    """trace_of(stdout, event=None) -> the parsed trace lines (see parse_trace)."""
    return parse_trace


@pytest.fixture(scope="session")
def minikernel_source():
    """read(name) -> the text of a file of the bundled kernel's sources (ground truth)."""
    root = os.path.join(os.path.dirname(__file__), "..", "..", "guest_images", "minikernel")

    def read(name: str) -> str:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            return f.read()

    return read

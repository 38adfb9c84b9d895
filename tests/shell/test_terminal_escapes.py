"""Text the guest or the ELF file controls cannot drive the terminal.

A guest that writes ESC sequences to its console (set the title, clear the screen), CR
to overwrite a line, or passes such a string to a traced function, and an ELF symbol
named with control characters, are shown with the controls escaped as \\xNN on a
terminal, as `x/s` shows them.  A pipe or a file gets the guest's bytes as they were.
"""
from __future__ import annotations

import io
import textwrap

import pytest
from elftools.elf.elffile import ELFFile

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session

PROGRAM = textwrap.dedent(r"""
    static inline void outb(unsigned short port, unsigned char v) { __asm__ volatile("outb %0,%1" :: "a"(v), "Nd"(port)); }
    static void puts_serial(const char *s) { while (*s) outb(0x3f8, *s++); }
    volatile long counter;
    __attribute__((noinline)) long take(const char *s) { counter += s[0]; return 0; }
    __attribute__((noinline)) long xxxx(long v) { counter += v; return v; }
    void _start(void) {
        take("\x1b]0;pwned\x07\x1b[2J\rroot# ");
        xxxx(1);
        puts_serial("\x1b]0;pwned\x07\x1b[2J\rroot# \n");
        __asm__ volatile("cli; hlt");
    }
""")
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\rroot# "
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x0droot# "


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def image(build_c_image, tmp_path_factory) -> str:
    path = build_c_image("escapes", PROGRAM)
    raw = bytearray(open(path, "rb").read())
    with open(path, "rb") as f:
        strtab = ELFFile(f).get_section_by_name(".strtab")
        start = strtab["sh_offset"]
        data = strtab.data()
    at = data.index(b"\0xxxx\0") + 1
    raw[start + at:start + at + 4] = b"\x1b[2J"  # the symbol xxxx is now named ESC [ 2 J
    out = tmp_path_factory.mktemp("esc") / "escapes.elf"
    out.write_bytes(bytes(raw))
    return str(out)


def _run(image: str, stream) -> str:
    s = Session(image, output=Output(stream, color=False))
    s.execute("p:e1 take s=+0(%di):string")
    s.execute("kprobe 0x" + format(s.machine.symbols.get("\\x1b[2J").address, "x"))
    s.execute("run")
    s.execute("trace show")
    s.execute("symbols *2J")
    s.out.flush()
    return stream.getvalue()


def test_on_a_terminal_control_characters_are_escaped(image):
    text = _run(image, Terminal())
    for ch in "\x1b\x07\r":
        assert ch not in text, repr(ch)
    assert SHOWN in text  # the console line
    assert f's="{SHOWN}"' in text  # the :string value, live and in `trace show`
    assert text.count(f's="{SHOWN}"') == 2
    assert "\\x1b[2J" in text  # the symbol's name


def test_a_pipe_gets_the_guests_bytes(image):
    text = _run(image, io.StringIO())
    assert HOSTILE in text

"""Property tests: profiles (see propsettings.py) and the small user image they drive."""
from __future__ import annotations

import textwrap

import pytest

import guestbuild
import propsettings  # noqa: F401 - registers and loads the hypothesis profile

WALKER = textwrap.dedent(r"""
    #include "guest.h"
    volatile long counter;
    __attribute__((noinline)) long leaf(long x) { counter += x; return x * 3 - 7; }
    __attribute__((noinline)) long walk(int depth) { return depth <= 0 ? leaf(depth) : walk(depth - 1) + leaf(depth); }
    int main(void) {
        long total = 0;
        for (int i = 0; i < 5; i++) total += walk(3);
        puts_(total == 5 * walk(3) ? "walk ok\n" : "walk odd\n");
        return 0;
    }
""")


@pytest.fixture(scope="session")
def user_image(tmp_path_factory):
    d = tmp_path_factory.mktemp("propimg")
    src = d / "walker.c"
    src.write_text(WALKER)
    return str(guestbuild.compile_guest(src, d / "walker.elf", debug=True,
                                        extra=("-fno-omit-frame-pointer", "-fno-optimize-sibling-calls")))

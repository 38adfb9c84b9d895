"""The fuzz suite: hostile input of every kind, with the invariants checked after each.

Profiles (FUZZ_PROFILE):

    ci    (default) derandomized, a few dozen inputs per target: seconds in CI.
    long  random seeds and fifty times as many inputs: a nightly run,
          FUZZ_PROFILE=long python3 -m pytest -p no:cacheprovider tests/fuzz
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import fuzzsettings  # registers the profiles
import guestbuild

FUZZ_GUEST = textwrap.dedent(r"""
    #include "guest.h"
    typedef const long clong;
    struct pair { clong a; long b; const char *name; };
    volatile long counter;
    __attribute__((noinline)) long leaf(clong x, struct pair *p) { counter += x + (p ? p->b : 0); return x * 3 - 7; }
    __attribute__((noinline)) long walk(int depth, struct pair *p) {
        return depth <= 0 ? leaf(depth, p) : walk(depth - 1, p) + leaf(depth, p);
    }
    int main(void) {
        struct pair pr = {1, 2, "pair"};
        long total = 0;
        for (int i = 0; i < 3; i++) total += walk(2, &pr);
        puts_(total ? "fuzz guest ok\n" : "fuzz guest odd\n");
        return 0;
    }
""")


@pytest.fixture(scope="session")
def fuzz_image(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("fuzzimg")
    src = d / "fuzzguest.c"
    src.write_text(FUZZ_GUEST)
    return str(guestbuild.compile_guest(src, d / "fuzzguest.elf", debug=True,
                                        extra=("-fno-omit-frame-pointer", "-fno-optimize-sibling-calls")))


def pytest_collection_modifyitems(items):
    """A fuzz test that hangs ends the run rather than spinning (one input that hangs is
    caught sooner, by fuzzsettings.each_example_bounded): pytest-timeout's signal
    method raises pytest's Failed inside the test, which hypothesis takes for a failing
    example and runs again to shrink it, hanging again, for ever.  The thread method dumps
    every stack and ends the process instead."""
    here = str(Path(__file__).parent)
    for item in items:
        if not str(item.fspath).startswith(here):
            continue
        mark = item.get_closest_marker("timeout")
        seconds = (mark.args[0] if mark.args else mark.kwargs.get("timeout")) if mark else None
        if fuzzsettings.PROFILE == "long":  # fifty times the inputs
            seconds = (seconds or 180) * 50
        item.add_marker(pytest.mark.timeout(seconds or 180, method="thread"), append=False)

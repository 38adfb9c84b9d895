"""Hypothesis profiles of the fuzz suite (FUZZ_PROFILE=ci|long; see conftest.py)."""
from __future__ import annotations

import functools
import os
import signal

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large])
settings.register_profile("fuzz-ci", derandomize=True, **_COMMON)
settings.register_profile("fuzz-long", **_COMMON)
PROFILE = os.environ.get("FUZZ_PROFILE", "ci")


def examples(n_ci: int) -> int:
    """Inputs for one target: n_ci in CI, fifty times that in the long profile."""
    return n_ci * 50 if PROFILE == "long" else n_ci


def profile_settings(n_ci: int):
    return settings(settings.get_profile(f"fuzz-{PROFILE}"), max_examples=examples(n_ci))


#: Longest one input may take before it counts as a hang (a CI input takes well under a second).
EXAMPLE_SECONDS = 60


class ExampleHang(Exception):
    """One generated input ran longer than EXAMPLE_SECONDS: an ordinary failure, so that
    hypothesis reports (and shrinks) the input, rather than the whole test timing out."""


def each_example_bounded(test):
    """Put under @given: every input gets EXAMPLE_SECONDS of wall-clock time (SIGALRM; the
    fuzz tests' pytest-timeout uses its thread method, so the signal is free)."""

    @functools.wraps(test)
    def bounded(*args, **kwargs):
        def on_alarm(signum, frame):
            raise ExampleHang(f"one input ran for more than {EXAMPLE_SECONDS} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, EXAMPLE_SECONDS)
        try:
            return test(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return bounded

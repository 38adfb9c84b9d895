"""Hypothesis profiles for the property tests (loaded by conftest.py).

    ci    (default) few examples per property, no deadline: the whole property suite
          takes seconds, even on a loaded two-core machine.
    long  sixty times as many: HYPOTHESIS_PROFILE=long python3 -m pytest tests/property
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
               print_blob=True)
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=1500, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(n_ci: int) -> int:
    """Examples for one property: n_ci under the ci profile, sixty times that under long."""
    return n_ci * 60 if PROFILE == "long" else n_ci

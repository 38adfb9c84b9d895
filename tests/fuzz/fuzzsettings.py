"""Hypothesis profiles of the fuzz suite (FUZZ_PROFILE=ci|long; see conftest.py)."""
from __future__ import annotations

import os

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

"""Test configuration: hypothesis profiles and shared fixtures."""

from __future__ import annotations

import faulthandler
import os

from hypothesis import HealthCheck, settings

# A hung test dumps every thread's stack instead of hanging silently.
faulthandler.enable()

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
# pytest --hypothesis-profile=thorough: a long search, for a change to the decomposer.
settings.register_profile(
    "thorough", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=5000
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

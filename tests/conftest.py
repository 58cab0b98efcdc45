import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Derandomised so a CI run is reproducible; LNLIB_HYPOTHESIS=dev explores new examples locally.
settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=300, deadline=None)
# CI's size with new examples: tests/variation_matrix.py runs it under several --hypothesis-seed values.
settings.register_profile(
    "seeded", derandomize=False, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("LNLIB_HYPOTHESIS", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)

"""Shared configuration for the sgmteach tests.

Rank promotion raises, so a `(n,)` array silently broadcast against `(n, 1)` is an error in the
library and in the tests alike. 64-bit floats are *not* enabled globally: the statistical tests
run in float32, as learners do; tests that compare against closed forms to ~1e-10 ask for the
`x64` fixture.
"""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# JAX's CPU client dispatches large computations asynchronously, and under load such a call
# sometimes never returns (all threads parked on futexes; reported upstream as jax-ml/jax#25861,
# whose workaround this is). Here it hit the jitted loss and floor computations of
# test_losses.py in 5 of ~150 calls under a loaded CPU; with synchronous dispatch, 0 of 120.
jax.config.update("jax_cpu_enable_async_dispatch", False)


@pytest.fixture
def x64():
    """Run one test with `jax_enable_x64` on (arrays made inside the test are float64)."""
    with jax.enable_x64(True):
        yield

"""Shared configuration for the sgmteach tests.

Rank promotion raises, so a `(n,)` array silently broadcast against `(n, 1)` is an error in the
library and in the tests alike. 64-bit floats are *not* enabled globally: the statistical tests
run in float32, as learners do; tests that compare against closed forms to ~1e-10 ask for the
`x64` fixture.
"""

# sgmteach first: importing it sets an XLA flag that must be in place before JAX's CPU backend
# starts (sgmteach/_xla.py: without it, XLA's CPU runtime sometimes hangs on this library's
# vmapped computations).
import sgmteach  # noqa: F401, I001

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run one test with `jax_enable_x64` on (arrays made inside the test are float64)."""
    with jax.enable_x64(True):
        yield

"""The papers' rates: exponents, the |G| effective-sample-size factor, inverses, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

from sgmteach.symmetry import (
    divergence_rate,
    invariant_gan_bound,
    samples_needed,
    symmetry_gain,
    w1_rate,
)

NS = np.array([10.0, 100.0, 1e3, 1e4, 1e5])


def _log_slope(fn, ns):
    """d log fn / d log n by a central difference in log n (step 1e-3; float64 via numpy)."""
    h = 1e-3
    up = np.log(np.asarray(fn(ns * np.exp(h)), np.float64))
    down = np.log(np.asarray(fn(ns * np.exp(-h)), np.float64))
    return (up - down) / (2 * h)


@pytest.mark.parametrize("d", [1, 3, 4, 10])
def test_w1_rate_slopes_are_minus_one_over_d(d):
    want = -0.5 if d == 1 else -1.0 / d
    # Exact power laws; the central difference in float32 is good to ~1e-3 (eps / h).
    np.testing.assert_allclose(_log_slope(lambda n: w1_rate(n, d), NS), want, atol=2e-3)


def test_w1_rate_in_two_dimensions_carries_a_log():
    # d/dlog n of n^{-1/2} log(1+n) = -1/2 + n / ((1+n) log(1+n)), in closed form.
    want = -0.5 + NS / ((1 + NS) * np.log1p(NS))
    np.testing.assert_allclose(_log_slope(lambda n: w1_rate(n, 2), NS), want, atol=2e-3)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_group_acts_as_an_effective_sample_size(d):
    for g in (2.0, 8.0, 64.0):
        np.testing.assert_allclose(w1_rate(NS, d, group_order=g), w1_rate(g * NS, d), rtol=1e-6)
        np.testing.assert_allclose(
            divergence_rate(NS, 3 * NS, d, group_order=g, constant=2.0),
            2.0 * (w1_rate(g * NS, d) + w1_rate(3 * g * NS, d)), rtol=1e-6)
    # The intrinsic dimension replaces d in the exponent.
    np.testing.assert_allclose(w1_rate(NS, 10, intrinsic_dim=d), w1_rate(NS, d), rtol=1e-6)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_symmetry_gain(d):
    k = 2 if d == 1 else d  # exponent of the gain: |G|^{-1/2} for d = 1, 2; |G|^{-1/d} above
    np.testing.assert_allclose(symmetry_gain(8, d), 8.0 ** (-1.0 / k), rtol=1e-6)
    np.testing.assert_allclose(symmetry_gain(8, d, n=NS), w1_rate(8 * NS, d) / w1_rate(NS, d),
                               rtol=1e-6)
    # For d = 2 the log factor cancels only slowly: log(1 + 8n)/log(1+n) - 1 < 2.1/log(n).
    far = float(symmetry_gain(8, d, n=1e12))
    assert abs(far / float(symmetry_gain(8, d)) - 1) < (0.1 if d == 2 else 1e-5)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_samples_needed_inverts_the_rate_and_divides_by_the_group(d):
    errors = np.asarray(w1_rate(NS, d, constant=3.0))
    np.testing.assert_allclose(samples_needed(errors, d, constant=3.0), NS, rtol=1e-4)
    np.testing.assert_allclose(samples_needed(errors, d, constant=3.0, group_order=8.0),
                               NS / 8, rtol=1e-4)


def test_invariant_gan_bound_is_the_three_term_sum():
    np.testing.assert_allclose(
        invariant_gan_bound(jnp.array([0.1, 0.2]), discriminator=0.05, generator=0.3),
        [0.1 + 0.3 + 0.2, 0.1 + 0.3 + 0.4], rtol=1e-6)


def test_rates_compile_once_and_take_traced_values():
    def rate_of(n, g):
        return w1_rate(n, 3, group_order=g)

    f = jax.jit(rate_of)
    with count_compiles("rate_of") as compiles:
        for g in (8.0, 4.0, 2.0):  # traced values: one compilation for all three
            np.testing.assert_allclose(f(jnp.asarray(NS), g), w1_rate(g * NS, 3), rtol=1e-6)
    assert len(compiles) == 1
    with count_compiles("rate_of") as compiles:  # positive control: a new shape compiles
        f(jnp.asarray(NS[:2]), 8.0)
    assert len(compiles) == 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: w1_rate(10, 0), "d must be a positive integer"),
        (lambda: w1_rate(10, 3, intrinsic_dim=4), "intrinsic_dim must be <= d"),
        (lambda: w1_rate(10, 3, intrinsic_dim=0), "intrinsic_dim must be"),
        (lambda: w1_rate(np.array([10, 0]), 3), "n must be > 0"),
        (lambda: w1_rate(10, 3, group_order=0), "group_order must be > 0"),
        (lambda: w1_rate(10, 3, constant=-1.0), "constant must be > 0"),
        (lambda: divergence_rate(10, -5, 3), "n must be > 0"),
        (lambda: samples_needed(0.0, 3), "error must be > 0"),
        (lambda: symmetry_gain(0, 3), "group_order must be > 0"),
    ],
)
def test_bad_inputs_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()

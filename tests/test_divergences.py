"""Divergence estimators and their invariant versions against exact values and identities."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import C_SE, count_compiles, mean_se

from sgmteach import (
    expected_mmd2,
    f_alpha,
    f_alpha_conjugate,
    lipschitz_alpha_divergence,
    mmd,
    mmd2,
    ring,
    w1_dual,
    w1_exact,
    w1_radial,
)
from sgmteach.symmetry import CyclicGroup, InvariantFunction, SignFlips, symmetrize

N, STEPS = 128, 300  # one sample size and one step count: each critic compiles once
P, Q = ring(8, radius=2.0, std=0.3), ring(8, radius=3.0, std=0.3)  # both C_8-invariant


@pytest.fixture(scope="module")
def samples():
    kx, ky = jr.split(jr.key(0))
    return np.asarray(P.sample(N, key=kx)), np.asarray(Q.sample(N, key=ky))


def _floor(target, group, repeats=3):
    """Mean exact W1 between two independent symmetrised n-samples: the plug-in's MC scale."""
    vals = [w1_exact(target.sample(N, key=jr.fold_in(jr.key(7), 2 * r)),
                     target.sample(N, key=jr.fold_in(jr.key(7), 2 * r + 1)), group=group)
            for r in range(repeats)]
    return float(np.mean(vals))


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
def test_f_alpha_conjugate_is_the_legendre_transform(alpha, x64):
    y = jnp.linspace(-2.0, 1.5, 15)
    xs = jnp.linspace(0.0, 30.0, 300_001)  # contains every maximiser ((a-1) y_+)^(1/(a-1)) <= 2.3
    brute = jnp.max(xs[None] * y[:, None] - f_alpha(xs, alpha)[None], axis=1)
    # Grid error of a sup: <= max f'' * h^2 / 8 with h = 1e-4 and f'' = x^(a-2) <= 30: < 1e-6.
    np.testing.assert_allclose(f_alpha_conjugate(y, alpha), brute, atol=1e-6)
    if alpha == 2.0:
        np.testing.assert_allclose(f_alpha_conjugate(y, 2.0), jnp.maximum(y, 0) ** 2 / 2 + 0.5)
    # Fenchel-Young, f(x) + f*(y) >= xy, with equality at x = f*'(y); f(1) = 0.
    assert f_alpha(1.0, alpha) == 0.0
    xx = jnp.linspace(0.0, 5.0, 51)
    assert jnp.all(f_alpha(xx, alpha)[:, None] + f_alpha_conjugate(y, alpha)[None]
                   >= xx[:, None] * y[None] - 1e-12)


@pytest.mark.parametrize("invariant", [False, True])
def test_w1_dual_is_certified_and_agrees_with_pot(samples, invariant):
    x, y = samples
    group = CyclicGroup(8) if invariant else None
    exact = w1_exact(x, y, group=group)
    est = w1_dual(x, y, key=jr.key(1), group=group, steps=STEPS)
    # Exact: the certified critic is an admissible test function for the (symmetrised)
    # empirical measures, so it cannot beat POT (1e-5: float32 critic values).
    assert est.value <= exact + 1e-5
    assert est.raw / est.lipschitz == pytest.approx(est.value)
    # Optimisation: the smooth critic cannot reach the plug-in's optimal potential, which
    # jumps between atoms. Its gap exact - value, measured once (2026-12) at these sizes over
    # 6 critic keys and 3 more sample pairs: plain 0.08-0.155 (of exact W1 1.08-1.27), C8 0.017
    # -0.034 (of 0.96-1.04). The bands hold those with room and are an order of magnitude below
    # the quantity, so a critic that learned nothing (value ~ 0) fails.
    band = 0.06 if invariant else 0.2
    assert exact - est.value <= band, (exact, est.value, band)
    assert est.history.shape == (STEPS,)
    if invariant:
        assert isinstance(est.critic, InvariantFunction)
        fz = jax.vmap(est.critic)(jnp.asarray(symmetrize(jnp.asarray(x[:4]), group)))
        np.testing.assert_allclose(fz.reshape(8, 4), jnp.broadcast_to(fz[:4], (8, 4)),
                                   atol=1e-5)


@pytest.mark.parametrize("invariant", [False, True])
def test_lipschitz_alpha_divergence_obeys_its_exact_bounds(samples, invariant):
    x, y = samples
    group = CyclicGroup(8) if invariant else None
    w1 = w1_exact(x, y, group=group)
    for lip in (1.0, 0.5):
        est = lipschitz_alpha_divergence(x, y, key=jr.key(2), lip=lip, group=group, steps=STEPS)
        # 0 <= D^{Gamma_L}(S P_n || S Q_n) <= L W1(S P_n, S Q_n) (infimal convolution with
        # eta = Q); the certified value is below the middle term exactly.
        assert 0.0 < est.value <= lip * w1 + 1e-5, (est.value, lip * w1)
    # P_n against itself: the divergence is 0, so the certified value is <= 0; training from
    # a random critic reaches 0 up to optimisation error (tolerance 0.05 of the P != Q value).
    same = lipschitz_alpha_divergence(x, x, key=jr.key(3), group=group, steps=STEPS)
    assert -0.05 * lip * w1 <= same.value <= 1e-6


def test_invariant_mmd_is_mmd_of_symmetrized_sets(samples):
    x, y = samples
    group = CyclicGroup(8)
    sx, sy = (np.asarray(symmetrize(jnp.asarray(v), group)) for v in (x, y))
    inv = mmd2(x, y, bandwidth=0.7, group=group)
    np.testing.assert_allclose(inv, mmd2(sx, sy, bandwidth=0.7), rtol=1e-4)  # float32 sums
    np.testing.assert_allclose(np.sqrt(mmd2(x, y, bandwidth=0.7)),
                               mmd(x, y, bandwidths=(0.7,)), rtol=1e-4)


# A regression snapshot, not an independent check: gain ratios r printed to 3 decimals by the
# same closed form when it was derived (ring of 8 modes, radius 2, std 0.3, C_m rotations).
# The independent check is the Monte-Carlo test below.
NOTES_RATIOS = {0.1: (0.497, 0.245, 0.119), 0.5: (0.455, 0.183, 0.051),
                1.0: (0.382, 0.090, 0.024), 4.0: (0.073, 0.009, 0.009)}


@pytest.mark.parametrize("h", NOTES_RATIOS)
def test_expected_mmd2_gain_ratio_matches_its_snapshot(h):
    target = ring(8, radius=2.0, std=0.3)
    plain = expected_mmd2(target, 64, bandwidth=h)
    for m, r in zip((2, 4, 8), NOTES_RATIOS[h], strict=True):
        ratio = expected_mmd2(target, 64, bandwidth=h, group=CyclicGroup(m)) / plain
        assert abs(ratio - r) <= 6e-4, (h, m, ratio, r)  # 5e-4 rounding + float slack


@pytest.mark.parametrize("invariant", [False, True])
def test_expected_mmd2_matches_monte_carlo(invariant):
    """E MMD^2(S P_n, S P'_n) = 2 E MMD^2(P, S P_n): independent, unbiased mean embeddings."""
    target, n, reps, h = ring(8, radius=2.0, std=0.3), 32, 150, 1.0
    group = CyclicGroup(4) if invariant else None
    keys = jr.split(jr.key(4), 2 * reps)
    vals = [mmd2(target.sample(n, key=keys[2 * r]), target.sample(n, key=keys[2 * r + 1]),
                 bandwidth=h, group=group) for r in range(reps)]
    est, se = mean_se(vals)
    assert abs(est - 2 * expected_mmd2(target, n, bandwidth=h, group=group)) <= C_SE * se


def test_radial_w1_of_scaled_gaussians():
    """X ~ N(0, I_2), Y = 2X in law: W1 = E|X| = sqrt(pi/2) (couple Y = 2X: the radial
    coupling is optimal for a scaling, and E|2X - X| = E|X|)."""
    n = 20_000
    kx, ky = jr.split(jr.key(5))
    x, y = jr.normal(kx, (n, 2)), 2 * jr.normal(ky, (n, 2))
    # The empirical radius quantiles do not cross (Y's are twice X's) except in the far tails,
    # so the estimate is mean|Y_n| - mean|X_n|: unbiased, s.e. sqrt(var|X| (1 + 4) / n) with
    # var|X| = (4 - pi)/2 for a unit Rayleigh radius.
    se = np.sqrt((4 - np.pi) / 2 * 5 / n)
    assert abs(w1_radial(x, y) - np.sqrt(np.pi / 2)) <= C_SE * se


@pytest.mark.slow
def test_invariant_w1_rate_has_slope_minus_one_over_d():
    """3-D standard Gaussian, |G| = 8 sign flips: E W1(S P_n, S P'_n) ~ (8 n)^(-1/3)."""
    group, ns, reps = SignFlips(3), np.array([16, 32, 64, 128, 256]), 6

    def mean_w1(n, g):
        vals = []
        for r in range(reps):
            kx, ky = jr.split(jr.fold_in(jr.key(int(n)), r))
            vals.append(w1_exact(jr.normal(kx, (int(n), 3)), jr.normal(ky, (int(n), 3)),
                                 group=g))
        return np.mean(vals)

    inv = np.array([mean_w1(n, group) for n in ns])
    slope = np.polyfit(np.log(ns), np.log(inv), 1)[0]
    # Fournier-Guillin: -1/d for d >= 3, approached from above at finite n (pre-asymptotic
    # curvature of an unbounded law); fits over a 16x range deviate by 0.05-0.1 (a reference
    # run gave -0.30). Tolerance 0.1.
    assert abs(slope + 1 / 3) <= 0.1, slope
    # Effective sample size |G| n (the papers' statement): invariant at n ~ plain at 8n, to
    # 15% (reference run: within 4%; the s.e. of each mean is about 3%).
    plain = np.array([mean_w1(8 * n, None) for n in ns[:3]])
    np.testing.assert_allclose(inv[:3], plain, rtol=0.15)


def test_moving_values_does_not_recompile():
    x = np.asarray(jr.normal(jr.key(0), (16, 2)))
    y, group = x + 1.0, CyclicGroup(4)
    with count_compiles("_fit") as fits, count_compiles("_mmd2") as mmds:
        for lr, pen, lip, alpha, h in ((1e-3, 10, 1, 2, 0.5), (2e-3, 50.0, 0.5, 1.5, 1.0),
                                       (3e-3, 100.0, 2.0, 3.0, 2)):
            lipschitz_alpha_divergence(x, y, key=jr.key(1), lr=lr, penalty=pen, lip=lip,
                                       alpha=alpha, group=group, steps=5)
            mmd2(x, y, bandwidth=h, group=group)
    assert len(fits) <= 1 and len(mmds) <= 1  # 0 if an earlier test compiled these shapes
    # Positive control: `steps` fixes the scan's length, so a new value must compile `_fit`
    # exactly once; a change in JAX's log text would make this fail, not the check above pass.
    with count_compiles("_fit") as fits:
        for alpha in (2.0, 3.0):
            lipschitz_alpha_divergence(x, y, key=jr.key(1), alpha=alpha, group=group, steps=7)
    assert len(fits) == 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, y: w1_exact(x, y[:, :1], group=None), "share the dimension"),
        (lambda x, y: w1_exact(x, y, group=SignFlips(3)), "d=3"),
        (lambda x, y: w1_exact(x[:0], y), "non-empty"),
        (lambda x, y: w1_exact(np.where(x > 1, np.nan, x), y), "NaN"),
        (lambda x, y: f_alpha_conjugate(0.5, 1.0), "alpha must be > 1"),
        (lambda x, y: lipschitz_alpha_divergence(x, y, key=jr.key(0), alpha=0.5),
         "alpha must be > 1"),
        (lambda x, y: lipschitz_alpha_divergence(x, y, key=jr.key(0), lip=0.0), "lip must be"),
        (lambda x, y: w1_dual(x, y, key=jr.key(0), steps=0), "steps must be"),
        (lambda x, y: mmd2(x, y, bandwidth=-1.0), "bandwidth must be"),
        (lambda x, y: expected_mmd2(P, 0), "n must be"),
        (lambda x, y: expected_mmd2(P, 10, bandwidth=0.0), "bandwidth must be"),
        (lambda x, y: expected_mmd2(P, 10, group=SignFlips(3)), "d=2"),
    ],
)
def test_bad_inputs_are_rejected(samples, call, match):
    x, y = samples
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_bad_types_are_rejected(samples):
    x, y = samples
    with pytest.raises(TypeError, match="GaussianMixture"):
        expected_mmd2(x, 10)
    with pytest.raises(TypeError, match="group"):
        mmd2(x, y, group="C8")


def test_expected_mmd2_refuses_a_target_the_group_does_not_leave_invariant():
    with pytest.raises(ValueError, match="invariant under the group"):
        expected_mmd2(ring(3, radius=2.0, std=0.3), 16, group=CyclicGroup(4))
    # control: the 8-ring is C4-invariant
    assert expected_mmd2(ring(8, radius=2.0, std=0.3), 16, group=CyclicGroup(4)) > 0

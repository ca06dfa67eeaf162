"""Score-matching losses: DSM = ESM + C(t), and the floor C(t) in closed form."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import C_SE, assert_mc_close, mean_se

from sgmteach import (
    VPSDE,
    ExactScore,
    GaussianMixture,
    ScoreMLP,
    dsm_floor,
    dsm_loss,
    esm_loss,
    gaussian,
    ring,
)

WEIGHTINGS = ("sigma2", "likelihood", "none")
T_LO = 0.05  # times uniform in [T_LO, 1]; the "none" weight 1/s_t^2 is <= 34 there
SDE = VPSDE(0.1, 20.0)


def _target():
    return ring(k=4, radius=2.0, std=0.5)


def _weight(sde, t, weighting):
    """lambda(t), written out independently of the library."""
    s = sde.marginal_mean_std(t)[1]
    return {"sigma2": s**2, "likelihood": sde.diffusion(t) ** 2, "none": jnp.ones_like(s)}[
        weighting
    ]


class _Shifted(eqx.Module):
    score: ExactScore
    delta: jax.Array

    def __call__(self, x, t):
        return self.score(x, t) + self.delta


@eqx.filter_jit
def _batched_losses(score, target, sde, key, weighting: str, batches: int, m: int):
    """DSM and ESM of `score` on `batches` independent batches of `m` (same noise for both)."""

    def one(key):
        kx, kt, kz = jr.split(key, 3)
        x0 = target.sample(m, key=kx)
        t = jr.uniform(kt, (m,), minval=T_LO, maxval=1.0)
        return (dsm_loss(score, sde, x0, t, key=kz, weighting=weighting),
                esm_loss(score, target, sde, x0, t, key=kz, weighting=weighting))

    return jax.vmap(one)(jr.split(key, batches))


@eqx.filter_jit
def _uniform_floor(target, sde, weighting: str, key, n: int = 40_000):
    # Times on a uniform grid of [T_LO, 1], one per draw: the floor of the time law U[T_LO, 1].
    # The reported s.e. treats the draws as i.i.d. in t, which overstates it (conservative).
    t = T_LO + (1.0 - T_LO) * (jnp.arange(n) + 0.5) / n
    return dsm_floor(target, sde, t, key=key, n=n, weighting=weighting)


@pytest.mark.parametrize("which, weighting", [("random-mlp", "sigma2"), ("exact", "sigma2")])
def test_dsm_minus_esm_is_the_floor(which, weighting):
    # Vincent (2011): DSM(s) - ESM(s) = E C(t) for *every* s. Same key in both losses (common
    # random numbers), 64 batches of 256; the batch-to-batch spread gives the s.e. (a t-statistic
    # with 63 degrees of freedom: P(|t| > 5) = 5e-6). The other weightings differ from these by
    # the factor lambda / s_t^2 (test_weightings_by_hand) and their floors are checked below.
    target = _target()
    if which == "exact":
        score = ExactScore(target, SDE)
    else:
        score = ScoreMLP(2, 32, 2, key=jr.key(0), sde=SDE)
    dsm, esm = _batched_losses(score, target, SDE, jr.key(1), weighting, 64, 256)
    if which == "exact":
        # The same computation on both sides: only float32 round-off of O(10) scores remains.
        assert float(jnp.max(esm)) < 1e-8
    else:
        assert float(jnp.min(esm)) > 0.01  # an untrained net is far from the score
    gap, se_gap = mean_se(dsm - esm)
    floor, se_floor = (float(v) for v in _uniform_floor(target, SDE, weighting, jr.key(2)))
    assert_mc_close(gap, floor, np.hypot(se_gap, se_floor), what=f"{which} {weighting}")


@pytest.mark.parametrize("weighting", ["sigma2"])
def test_exact_score_beats_a_shifted_one(weighting):
    # With s = score + delta (constant delta): ESM(s) = E lambda ||delta||^2 exactly, and
    # DSM(s) - DSM(score) (same noise) has that mean, so DSM(score) < DSM(s).
    target, delta = _target(), jnp.array([0.3, -0.2])
    exact = ExactScore(target, SDE)
    shifted = _Shifted(exact, delta)
    d_exact, _ = _batched_losses(exact, target, SDE, jr.key(3), weighting, 64, 256)
    d_shift, e_shift = _batched_losses(shifted, target, SDE, jr.key(3), weighting, 64, 256)
    # E lambda(t) for t ~ U[T_LO, 1], by a 4001-point Simpson rule (lambda smooth on this
    # interval; error << 1e-6 relative).
    ts = jnp.linspace(T_LO, 1.0, 4001)
    lam = np.asarray(jax.vmap(lambda t: _weight(SDE, t, weighting))(ts), np.float64)
    mean_lam = (lam[0] + lam[-1] + 4 * lam[1:-1:2].sum() + 2 * lam[2:-1:2].sum()) / 12000
    expected = mean_lam * float(jnp.sum(delta**2))
    # ESM: exact given the drawn times; the times' own MC error is the s.e. of lambda.
    esm, se_esm = mean_se(e_shift)
    # 5 s.e., plus float32 round-off (1e-6 relative) for weightings that do not depend on t.
    assert_mc_close(esm, expected, se_esm, bias=1e-6 * expected, what="ESM of shifted")
    gain, se_gain = mean_se(d_shift - d_exact)
    assert_mc_close(gain, expected, se_gain, what="DSM(shifted) - DSM(exact)")  # 5 s.e.
    # DSM(exact) < DSM(shifted) over the 16,384 draws, by more than 5 s.e. of the difference.
    assert float(jnp.mean(d_exact)) < float(jnp.mean(d_shift))
    assert gain - C_SE * se_gain > 0


def _direct_floor(target, sde, t, weighting, key, n):
    """E lambda ||grad log p_t(x_t) + z / s_t||^2 by plain Monte Carlo: the DSM loss of the
    exact score, written out without the library's losses."""
    kx, kz = jr.split(key)
    m, s = sde.marginal_mean_std(t)
    z = jr.normal(kz, (n, target.dim))
    xt = m * target.sample(n, key=kx) + s * z
    vals = _weight(sde, t, weighting) * jnp.sum((target.diffuse(sde, t).score(xt) + z / s) ** 2,
                                                axis=-1)
    return mean_se(vals)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_floor_identity_against_direct_monte_carlo(weighting):
    # C(t) = lambda / s^2 (d - s^2 E||grad log p_t||^2) (dsm_floor) against the definition
    # E lambda ||grad log p_t(x_t) + z/s_t||^2; independent keys, s.e. sqrt(se1^2 + se2^2).
    target, n = _target(), 20_000
    for i, t in enumerate((0.05, 0.5)):
        t = jnp.asarray(t)
        closed, se_closed = dsm_floor(target, SDE, t, key=jr.key(10 + i), n=n,
                                      weighting=weighting)
        direct, se_direct = _direct_floor(target, SDE, t, weighting, jr.key(20 + i), n)
        assert_mc_close(closed, direct, np.hypot(se_closed, se_direct),
                        what=f"t={float(t)} {weighting}")  # 5 s.e.


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_floor_of_a_gaussian_in_closed_form(weighting):
    # X_0 ~ N(mu, v I): p_t = N(m mu, (m^2 v + s^2) I) and E||grad log p_t||^2 = d / (m^2 v + s^2),
    # so C(t) = lambda d m^2 v / (s^2 (m^2 v + s^2)) exactly.
    # The Gaussian is written as four identical components, so that it has the shapes of the
    # ring above (and reuses its compiled operations).
    d, v = 2, 0.7
    target = GaussianMixture(jnp.full(4, 0.25), jnp.tile(jnp.array([[1.0, -2.0]]), (4, 1)),
                             jnp.tile(v * jnp.eye(d)[None], (4, 1, 1)))
    for i, t in enumerate((0.05, 0.5)):
        t = jnp.asarray(t)
        m, s = SDE.marginal_mean_std(t)
        exact = float(_weight(SDE, t, weighting) * d * m**2 * v / (s**2 * (m**2 * v + s**2)))
        closed, se = dsm_floor(target, SDE, t, key=jr.key(30 + i), n=20_000, weighting=weighting)
        assert_mc_close(closed, exact, se, what=f"dsm_floor t={float(t)}")  # 5 s.e.
        direct, se_d = _direct_floor(target, SDE, t, weighting, jr.key(40 + i), 20_000)
        assert_mc_close(direct, exact, se_d, what=f"direct t={float(t)}")  # 5 s.e.


@eqx.filter_jit
def _all_weightings(score, target, sde, x0, t, key):
    return {w: (dsm_loss(score, sde, x0, t, key=key, weighting=w),
                esm_loss(score, target, sde, x0, t, key=key, weighting=w))
            for w in WEIGHTINGS}


class _Linear(eqx.Module):
    """A cheap stand-in score, s(x, t) = -(1 + t) x."""

    def __call__(self, x, t):
        return -(1.0 + t) * x


def test_weightings_by_hand():
    # Same noise: the "likelihood" losses are g^2 / s^2 times the "sigma2" ones, "none" 1 / s^2.
    target = gaussian(jnp.array([1.0, -2.0]), jnp.eye(2))
    x0 = target.sample(128, key=jr.key(0))
    t = jnp.asarray(0.4)
    s = SDE.marginal_mean_std(t)[1]
    losses = _all_weightings(_Linear(), target, SDE, x0, t, jr.key(2))
    for i in range(2):  # dsm, esm
        base = losses["sigma2"][i]
        np.testing.assert_allclose(losses["likelihood"][i], SDE.diffusion(t) ** 2 / s**2 * base,
                                   rtol=1e-5)  # float32
        np.testing.assert_allclose(losses["none"][i], base / s**2, rtol=1e-5)
    # A scalar time is the same as that time for every row.
    again = _all_weightings(_Linear(), target, SDE, x0, jnp.full(128, 0.4), jr.key(2))
    np.testing.assert_allclose(again["sigma2"][0], losses["sigma2"][0], rtol=1e-6)


@pytest.mark.parametrize("fn", ["dsm_loss", "esm_loss", "dsm_floor"])
def test_unknown_weighting(fn):
    target, x0 = _target(), jnp.zeros((4, 2))
    score = ExactScore(target, SDE)
    calls = {
        "dsm_loss": lambda: dsm_loss(score, SDE, x0, 0.5, key=jr.key(0), weighting="snr"),
        "esm_loss": lambda: esm_loss(score, target, SDE, x0, 0.5, key=jr.key(0),
                                     weighting="Sigma2"),
        "dsm_floor": lambda: dsm_floor(target, SDE, 0.5, key=jr.key(0), n=10, weighting=""),
    }
    with pytest.raises(ValueError, match="weighting must be one of"):
        calls[fn]()


def test_loss_needs_a_batch():
    score = ExactScore(_target(), SDE)
    with pytest.raises(ValueError, match="x0 must have shape"):
        dsm_loss(score, SDE, jnp.zeros(2), 0.5, key=jr.key(0))

"""sg.tails: the Student-t law, the heavy submanifold, the tail metrics, the finiteness map."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import assert_mc_close
from scipy.special import gamma as gamma_fn
from scipy.stats import binom

import sgmteach as sg
from sgmteach import tails as T

# ---------------------------------------------------------------------------------------------
# StudentT


@pytest.mark.parametrize("nu, d", [(1.0, 1), (1.0, 2), (3.0, 2), (0.7, 3), (5.0, 3)])
def test_student_t_density_integrates_to_one_and_matches_its_survival(nu, d, x64):
    t = T.StudentT(nu, d, scale=1.3)
    # radial quadrature in u = log r: P(|X| <= R) = int_0^R |S^{d-1}| r^{d-1} p(r e) dr
    u = np.linspace(-30, np.log(1e6), 400_001)
    r = np.exp(u)
    area = 2 * np.pi ** (d / 2) / gamma_fn(d / 2)
    x = np.zeros((r.size, d))
    x[:, 0] = r
    dens = area * r**d * np.exp(np.asarray(t.log_prob(jnp.asarray(x))))  # r^{d-1} p dr, dr = r du
    inside = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(u))])
    check = np.array([1e-1, 1.0, 10.0, 1e3, 1e5])
    idx = np.searchsorted(r, check)
    surv = np.asarray(t.radial_ccdf(jnp.asarray(r[idx])))
    # the density's mass inside R plus the exact survival beyond R is one (quadrature ~1e-9)
    np.testing.assert_allclose(inside[idx] + surv, 1.0, atol=1e-6)
    if d == 2:  # the notes' closed form (1 + r^2 / nu s^2)^(-nu/2)
        np.testing.assert_allclose(surv, (1 + r[idx] ** 2 / (nu * 1.3**2)) ** (-nu / 2),
                                   rtol=1e-9)


def test_student_t_score_is_the_gradient_of_its_log_density():
    t = T.StudentT(1.5, 3, scale=0.8)
    x = 5 * jr.normal(jr.key(0), (50, 3))
    auto = jax.vmap(jax.grad(lambda z: t.log_prob(z)))(x)
    np.testing.assert_allclose(t.score(x), auto, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("nu", [0.5, 1.0, 3.0])
def test_student_t_samples_have_the_exact_radial_law(nu):
    t = T.StudentT(nu, 2)
    x = t.sample(40_000, key=jr.key(1))
    assert x.shape == (40_000, 2) and bool(jnp.all(jnp.isfinite(x)))
    r = np.linalg.norm(np.asarray(x), axis=1)
    for q in [0.5, 2.0, 20.0, 200.0]:
        s = float(t.radial_ccdf(q))
        assert_mc_close((r > q).mean(), s, np.sqrt(s * (1 - s) / r.size), what=f"S({q})")


def test_student_t_nu_is_traced_and_checked_under_jit():
    @jax.jit
    def mean_log_prob(nu, key):
        t = T.StudentT(nu, 2)
        return jnp.mean(t.log_prob(t.sample(100, key=key)))

    mean_log_prob(1.0, jr.key(0))
    assert mean_log_prob._cache_size() == 1
    mean_log_prob(3.0, jr.key(0))
    assert mean_log_prob._cache_size() == 1  # a new nu: no recompilation
    with pytest.raises(Exception, match="nu must be > 0"):
        mean_log_prob(-1.0, jr.key(0)).block_until_ready()


@pytest.mark.parametrize("kw, match", [
    (dict(nu=0.0, dim=2), "nu must be"), (dict(nu=-1.0, dim=2), "nu must be"),
    (dict(nu=np.nan, dim=2), "nu must be"), (dict(nu=1.0, dim=0), "dim must be"),
    (dict(nu=1.0, dim=2, scale=0.0), "scale must be"),
])
def test_student_t_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        T.StudentT(**kw)
    with pytest.raises(ValueError, match="last axis"):
        T.StudentT(1.0, 2).log_prob(jnp.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------
# The heavy submanifold


def test_submanifold_coordinates_have_the_exact_tails():
    h = T.HeavyTailSubmanifold(jnp.array([0.6, 1.5]), 6)
    x = np.asarray(h.sample(40_000, key=jr.key(2)))
    assert x.shape == (40_000, 6) and np.all(x[:, 2:] == 0)
    assert h.orthogonal_distance(x) == 0.0
    np.testing.assert_allclose(h.tail_indices, [1 / 0.6, 1 / 1.5], rtol=1e-6)
    for q in [0.5, 3.0, 50.0]:
        s = np.asarray(h.coordinate_ccdf(q))
        emp = (np.abs(x[:, :2]) > q).mean(0)
        assert_mc_close(emp, s, np.sqrt(s * (1 - s) / x.shape[0]), what=f"S_i({q})")
    noisy = x + np.concatenate([np.zeros((40_000, 2)), np.ones((40_000, 4))], 1)
    assert h.orthogonal_distance(noisy) == pytest.approx(2.0)
    assert len(T.AUTHORS_EXPONENTS) == 10
    with pytest.raises(ValueError, match="exponents must be"):
        T.HeavyTailSubmanifold(jnp.array([1.0, -0.5]), 4)
    with pytest.raises(ValueError, match="dim must be at least"):
        T.HeavyTailSubmanifold(jnp.ones(3), 2)


# ---------------------------------------------------------------------------------------------
# Tail metrics


def _expected_l1(survival, n, edges, r_min):
    """E[radial_ccdf_l1(exact n-sample, S)] with r_max far in the tail (S(r_max) ~ 0, so the
    authors' conditioning on r <= r_max is negligible): n S_hat(left edge) ~ Bin(n, S(left)),
    compared with S(centre); each bin's E|X/n - S(centre)| summed from the binomial pmf."""
    left, centre, width = edges[:-1], 0.5 * (edges[:-1] + edges[1:]), np.diff(edges)
    total = 0.0
    for lo, c, w in zip(left, centre, width, strict=True):
        if lo < r_min:
            continue
        p, target = survival(lo), survival(c)
        sd = np.sqrt(n * p * (1 - p))
        k = np.arange(max(0, int(n * p - 10 * sd) - 2), min(n, int(n * p + 10 * sd) + 3) + 1)
        total += w * np.sum(binom.pmf(k, n, p) * np.abs(k / n - target))
    return total


def test_radial_metric_matches_its_exact_expectation_on_exact_samples():
    t = T.StudentT(3.0, 2)
    n, r_max, bins = 2000, 2000.0, 4000  # S(2000) ~ 1e-8: conditioning negligible
    vals = [T.radial_ccdf_l1(t.sample(n, key=k), t, r_max=r_max, bins=bins)
            for k in jr.split(jr.key(3), 30)]
    survival = lambda r: float(t.radial_ccdf(r))  # noqa: E731
    edges = np.linspace(0.0, r_max, bins + 1)
    # only bins that some of the 2000 points reach contribute noise; beyond S < 1e-6 the
    # expected term is w |0 - S(c)|, summed in float64 by the same loop
    expected = _expected_l1(survival, n, edges[: np.searchsorted(edges, 300.0) + 1], 1.0)
    far = edges[np.searchsorted(edges, 300.0):]
    expected += np.sum(np.diff(far) * np.asarray(t.radial_ccdf(0.5 * (far[1:] + far[:-1]))))
    mean, se = np.mean(vals), np.std(vals, ddof=1) / np.sqrt(len(vals))
    assert_mc_close(mean, expected, se, what="E radial_ccdf_l1")


def test_radial_metric_between_two_exact_samples_is_at_its_floor():
    t = T.StudentT(1.0, 2)
    metric = lambda a, b: T.radial_ccdf_l1(a, b, r_max=300.0)  # noqa: E731  (authors' nu = 1)
    floor = sg.mc_floor(metric, t, 2000, key=jr.key(4), repeats=20)
    a, b = t.sample(2000, key=jr.key(5)), t.sample(2000, key=jr.key(6))
    # one more pair of exact samples is within the floor's spread
    assert abs(metric(a, b) - floor.mean) <= 4 * floor.std, (metric(a, b), floor)
    # a light-tailed sample of the same scale is far outside it
    gauss = jr.normal(jr.key(7), (2000, 2))
    assert metric(gauss, b) > floor.mean + 10 * floor.std
    # and the default r_max (3 x the 99th percentile radius) is finite and works on exact laws
    assert np.isfinite(T.radial_ccdf_l1(a, t)) and np.isfinite(T.radial_ccdf_l1(a, b))


def test_tail_log_error_and_marginal_metric():
    t = T.StudentT(1.0, 2)
    x = t.sample(20_000, key=jr.key(8))
    # exact samples: at the 99.9 % level S = 1e-3 holds ~20 points, log-error ~ 1/sqrt(20);
    # the mean over 20 levels (95 - 99.9 %) is below 0.1
    assert T.tail_log_error(x, t) < 0.1
    assert T.tail_log_error(x, t.sample(20_000, key=jr.key(9))) < 0.15
    # a Gaussian of the same bulk misses the tail entirely: S_gen = 0 at the top levels
    assert T.tail_log_error(jr.normal(jr.key(10), (20_000, 2)), t) > 3.0
    h = T.HeavyTailSubmanifold(jnp.array([0.8, 1.2]), 5)
    z = h.sample(5000, key=jr.key(11))
    exact_err = T.marginal_ccdf_l1(z, h, r_max=1e4, bins=5000)
    wrong = T.marginal_ccdf_l1(z.at[:, :2].multiply(10.0), h, r_max=1e4, bins=5000)
    assert wrong > 3 * exact_err
    with pytest.raises(ValueError, match="NaN or inf"):
        T.radial_ccdf_l1(jnp.full((3, 2), jnp.inf), t)
    with pytest.raises(ValueError, match="share d"):
        T.radial_ccdf_l1(x, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="levels"):
        T.tail_log_error(x, t, levels=(0.9, 1.5))
    with pytest.raises(TypeError):
        T.marginal_ccdf_l1(z, t)


# ---------------------------------------------------------------------------------------------
# Finiteness


def _truncated_integral(alpha, nu_p, nu_q, R):
    """int_{|x| < R} p^alpha q^(1 - alpha) dx for 1-D Student-t laws, by quadrature in log x."""
    p, q = T.StudentT(nu_p, 1), T.StudentT(nu_q, 1)
    u = np.linspace(-10, np.log(R), 200_001)
    x = np.exp(u)[:, None]
    logf = alpha * np.asarray(p.log_prob(x), np.float64) + (1 - alpha) * np.asarray(
        q.log_prob(x), np.float64)
    return 2 * np.trapezoid(np.exp(logf + u), u)  # symmetric: both half-lines


@pytest.mark.parametrize("nu_p, nu_q, alpha, finite", [
    (1.0, 3.0, 2.0, False), (1.0, 3.0, 1.4, True), (3.0, 1.0, 2.0, True),
])
def test_plain_divergence_condition_against_quadrature(nu_p, nu_q, alpha, finite):
    # the notes' checks (heavy-tails notes §2.4 (b)): growth of the truncated integral
    got = T.divergence_finite(1, alpha, nu_q, source_tail_index=nu_p)
    assert bool(got.plain) is finite
    i2, i5, i8 = (_truncated_integral(alpha, nu_p, nu_q, R) for R in (1e2, 1e5, 1e8))
    # a tail |x|^(-1-e) adds a mass ~R^(-e) per R: the increments over equal log-ranges shrink
    # by 1000^(-e) when e > 0 (finite; e = 0.2 for the middle case gives 0.25) and do not
    # shrink when e <= 0
    if finite:  # (or the tail is already below round-off)
        assert i8 - i5 < max(0.5 * (i5 - i2), 1e-8 * i8), (i2, i5, i8)
    else:
        assert i8 - i5 >= i5 - i2, (i2, i5, i8)


def test_finiteness_map():
    alpha = np.array([[1.0], [1.5], [2.0], [10.0]])
    nu = np.array([[0.5, 1.0, 2.5, 5.0]])
    f = T.divergence_finite(2, alpha, nu)
    assert f.regularised.shape == (4, 4) and f.regularised.all()  # light source: always
    assert f.plain.all()
    # moment: alpha / (alpha - 1) < nu; KL (alpha = 1) never
    expected = np.array([[False] * 4, [False, False, False, True], [False, False, True, True],
                         [False, False, True, True]])
    np.testing.assert_array_equal(f.moment, expected)
    np.testing.assert_array_equal(f.w1[0], [False, False, True, True])
    np.testing.assert_array_equal(f.beta[0], 2 + nu[0])
    heavy = T.divergence_finite(2, 2.0, 3.0, source_tail_index=0.8)  # no first moment
    assert not heavy.plain and not heavy.regularised and not heavy.w1
    for bad in [dict(alpha=0.0), dict(alpha=-1.0), dict(tail_index=0.0),
                dict(tail_index=np.nan)]:
        kw = dict(d=2, alpha=2.0, tail_index=3.0) | bad
        with pytest.raises(ValueError):
            T.divergence_finite(**kw)
    with pytest.raises(ValueError, match="d must be"):
        T.divergence_finite(0, 2.0, 3.0)

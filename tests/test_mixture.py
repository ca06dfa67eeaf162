"""Gaussian mixtures: exact densities, scores and diffused laws."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import assert_mc_close, mean_se, moments_se

from sgmteach import (
    VESDE,
    VPSDE,
    ExactScore,
    GaussianMixture,
    SubVPSDE,
    gaussian,
    grid,
    ring,
    spiral,
    two_moons,
)


def _skewed():
    """Three unequal components with full covariances (eigen-std between 0.3 and 1.2)."""

    def rot(a, sx, sy):
        r = jnp.array([[jnp.cos(a), -jnp.sin(a)], [jnp.sin(a), jnp.cos(a)]])
        return r @ jnp.diag(jnp.array([sx, sy]) ** 2) @ r.T

    covs = jnp.stack([rot(0.3, 1.0, 0.3), rot(-1.0, 0.5, 1.2), rot(2.0, 0.4, 0.4)])
    return GaussianMixture(jnp.array([0.2, 0.5, 0.3]), jnp.array([[-2.0, 0.5], [1.5, 1.0],
                                                                  [0.0, -2.5]]), covs)


def _probe_points(key, d, n=64, scale=4.0):
    # Spread wide, so responsibilities range from mixed to saturated.
    return scale * jr.normal(key, (n, d))


@eqx.filter_jit
def _score_and_autodiff(target, x):
    return target.score(x), jax.vmap(jax.grad(target.log_prob))(x), jax.vmap(target.score)(x)


@pytest.mark.parametrize(
    "make",
    [_skewed, lambda: ring(k=5, dim=3).diffuse(VPSDE(0.1, 20.0), jnp.asarray(0.05))],
    ids=["skewed", "diffused-ring3"],
)
def test_score_is_gradient_of_log_prob(make, x64):
    target = make()
    x = _probe_points(jr.key(0), target.dim)
    batched, auto, one_by_one = _score_and_autodiff(target, x)
    # float64 round-off in log_prob (~1e-14 of |log p| <= 1e3) through the gradient; scores are
    # O(10-100) here, so 1e-9 relative is far above rounding and far below any real slip.
    np.testing.assert_allclose(batched, auto, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(one_by_one, batched, rtol=1e-12)


@pytest.mark.parametrize("t", [0.4])
def test_log_prob_integrates_to_one(t, x64):
    # Lattice sum h^2 sum p(x) with h = 0.1 on [-9, 9]^2. On the infinite lattice it equals the
    # integral up to aliasing 2 exp(-2 pi^2 std^2 / h^2) <= 2e-77 (every eigen-std >= 0.3).
    # Truncation: every mean has |coordinate| <= 2.5 and every eigen-std <= 1.2, so each edge is
    # >= 5.4 std away: the mass outside is <= 4 P(N(0,1) > 5.4) = 1.3e-7.
    target = _skewed().diffuse(VPSDE(0.1, 20.0), jnp.asarray(t))
    h, L = 0.1, 9.0
    c = jnp.arange(-L, L + h / 2, h)
    xy = jnp.stack(jnp.meshgrid(c, c, indexing="ij"), -1)
    total = float(jnp.sum(jnp.exp(target.log_prob(xy))) * h**2)
    assert abs(total - 1.0) < 1.5e-7  # the truncation bound above


def test_log_prob_integrates_to_one_tightly(x64):
    # With the box at > 12 std from every mean, truncation is < 1e-30 and aliasing 2e-77: the
    # lattice sum is 1 to float64 summation error (~1e-13 for 4e4 terms).
    target = GaussianMixture.isotropic(jnp.array([0.3, 0.7]), jnp.array([[-1.0, 0.0],
                                                                        [1.0, 0.5]]), 0.4)
    h, L = 0.05, 7.0
    c = jnp.arange(-L, L + h / 2, h)
    xy = jnp.stack(jnp.meshgrid(c, c, indexing="ij"), -1)
    total = float(jnp.sum(jnp.exp(target.log_prob(xy))) * h**2)
    assert abs(total - 1.0) < 1e-11


def test_mean_and_cov_by_hand():
    # 1-D: w = (1/4, 3/4), mu = (-1, 3), var = (1, 4).
    # mean = -1/4 + 9/4 = 2; E x^2 = (1 + 1)/4 + 3 (4 + 9)/4 = 10.25; var = 10.25 - 4 = 6.25.
    mix = GaussianMixture(jnp.array([0.25, 0.75]), jnp.array([[-1.0], [3.0]]),
                          jnp.array([[[1.0]], [[4.0]]]))
    np.testing.assert_allclose(mix.mean(), [2.0], rtol=1e-6)
    np.testing.assert_allclose(mix.cov(), [[6.25]], rtol=1e-6)
    assert (mix.dim, mix.n_components) == (1, 2)


def test_sample_moments_and_weights():
    target = _skewed()
    n = 50_000
    x = target.sample(n, key=jr.key(0))
    assert x.shape == (n, 2)
    mu, se_mu, cov, se_cov = moments_se(x)
    assert_mc_close(mu, target.mean(), se_mu, what="mean")  # 5 s.e. per entry
    assert_mc_close(cov, target.cov(), se_cov, what="cov")  # 5 s.e. per entry
    # E_p[p(k | X)] = w_k exactly: checks the component frequencies of `sample`.
    r, se_r = mean_se(target.responsibilities(x))
    assert_mc_close(r, target.weights, se_r, what="responsibilities")  # 5 s.e.


@pytest.mark.parametrize(
    "sde", [VPSDE(0.1, 20.0), VESDE(0.05, 5.0), SubVPSDE(0.1, 20.0, schedule="cosine")],
    ids=["vp", "ve", "subvp-cosine"],
)
def test_diffuse_matches_forward_noised_samples(sde):
    target, t, n = _skewed(), jnp.asarray(0.3) * sde.T, 50_000
    k0, k1, k2 = jr.split(jr.key(1), 3)
    xt = sde.perturb(target.sample(n, key=k0), t, key=k1)
    pt = target.diffuse(sde, t)
    m, s = sde.marginal_mean_std(t)
    # The diffused law in closed form: m_t mu_k and m_t^2 Sigma_k + s_t^2 I.
    np.testing.assert_allclose(pt.means, m * target.means, rtol=1e-6)
    np.testing.assert_allclose(pt.covs, m**2 * target.covs + s**2 * jnp.eye(2)[None], rtol=1e-6)
    np.testing.assert_array_equal(pt.weights, target.weights)
    # ... against forward-noised samples: moments (5 s.e. per entry) ...
    mu, se_mu, cov, se_cov = moments_se(xt)
    assert_mc_close(mu, pt.mean(), se_mu, what="diffused mean")
    assert_mc_close(cov, pt.cov(), se_cov, what="diffused cov")
    r, se_r = mean_se(pt.responsibilities(xt))
    assert_mc_close(r, target.weights, se_r, what="diffused responsibilities")
    # ... and log-likelihood: E log p_t(X_t) over forward-noised X_t equals E log p_t(Y) over
    # Y ~ p_t (= -entropy); two independent means, s.e. sqrt(se1^2 + se2^2), 5 s.e.
    ll_fwd, se_fwd = mean_se(pt.log_prob(xt))
    ll_own, se_own = mean_se(pt.log_prob(pt.sample(n, key=k2)))
    assert_mc_close(ll_fwd, ll_own, np.hypot(se_fwd, se_own), what="log-likelihood")


@pytest.mark.parametrize(
    "sde",
    [VPSDE(0.1, 20.0), VPSDE(0.1, 20.0, schedule="cosine", T=2.0), SubVPSDE(0.1, 20.0),
     VESDE(0.01, 10.0)],
    ids=["vp", "vp-cosine", "subvp", "ve"],
)
def test_diffuse_at_zero_is_identity(sde):
    # m_0 = 1 and s_0 = 0 exactly, so the mixture comes back bit for bit.
    target = _skewed()
    p0 = target.diffuse(sde, jnp.asarray(0.0))
    for name in ("weights", "means", "covs"):
        np.testing.assert_array_equal(getattr(p0, name), getattr(target, name), err_msg=name)
    x = _probe_points(jr.key(0), 2)
    np.testing.assert_allclose(p0.log_prob(x), target.log_prob(x), rtol=1e-6)


def test_exact_score_is_score_of_diffused_mixture():
    # Same computation as diffuse(...).score (whose gradient identity is tested above), on one
    # point or a batch, eager or jitted: equal to float32 round-off.
    target, sde = _skewed(), VPSDE(0.1, 20.0)
    score = ExactScore(target, sde)
    x = _probe_points(jr.key(2), 2)
    for t in (0.01, 1.0):
        t = jnp.asarray(t)
        pt = target.diffuse(sde, t)
        np.testing.assert_allclose(score(x, t), pt.score(x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(score(x[0], t), pt.score(x[0]), rtol=1e-6, atol=1e-6)
    jitted = eqx.filter_jit(lambda s, x, t: jax.vmap(s, in_axes=(0, None))(x, t))
    np.testing.assert_allclose(jitted(score, x, jnp.asarray(0.3)),
                               target.diffuse(sde, jnp.asarray(0.3)).score(x), rtol=1e-5,
                               atol=1e-4)  # fused differently: ~eps x the largest O(100) term


def test_diffuse_time_is_traced():
    # Moving t or beta_max never recompiles.
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def logp(target, sde, t, x):
        return target.diffuse(sde, t).log_prob(x)

    target, x = _skewed(), jnp.zeros(2)
    vals = {float(logp(target, VPSDE(0.1, b), jnp.asarray(t), x))
            for b, t in ((20.0, 0.1), (10.0, 0.5), (5.0, 0.9))}
    assert len(vals) == 3


@pytest.mark.parametrize(
    "make, k",
    [(ring, 8), (grid, 9), (two_moons, 16), (spiral, 16),
     (lambda **kw: gaussian(jnp.zeros(2), jnp.eye(2)), 1)],
    ids=["ring", "grid", "two_moons", "spiral", "gaussian"],
)
def test_named_targets_build(make, k):
    target = make()
    assert isinstance(target, GaussianMixture)
    assert (target.dim, target.n_components) == (2, k)
    assert target.covs.shape == (k, 2, 2)
    np.testing.assert_allclose(target.weights, np.full(k, 1 / k), rtol=1e-6)
    if make is ring:  # the same padding code serves every planar target
        lifted = make(dim=3)
        assert lifted.dim == 3
        np.testing.assert_array_equal(lifted.means[:, :2], target.means)
        np.testing.assert_array_equal(lifted.means[:, 2], 0.0)


def test_named_target_geometry():
    r = ring(k=6, radius=3.0, std=0.2)
    np.testing.assert_allclose(jnp.linalg.norm(r.means, axis=1), 3.0, rtol=1e-6)
    np.testing.assert_allclose(r.mean(), 0.0, atol=1e-6)
    # Cov of a uniform ring of k >= 3 points: (R^2 / 2 + std^2) I.
    np.testing.assert_allclose(r.cov(), (4.5 + 0.04) * jnp.eye(2), rtol=1e-5, atol=1e-6)
    g = grid(n=3, spacing=2.0)
    assert sorted(set(np.asarray(g.means).ravel().tolist())) == [-2.0, 0.0, 2.0]
    sp = spiral(k=5, scale=4.0)
    np.testing.assert_allclose(jnp.linalg.norm(sp.means, axis=1), 4.0 * np.linspace(0.15, 1, 5),
                               rtol=1e-6)
    mean, cov = jnp.array([1.0, -2.0]), jnp.array([[2.0, 0.5], [0.5, 1.0]])
    gs = gaussian(mean, cov)
    np.testing.assert_allclose(gs.mean(), mean, rtol=1e-6)
    np.testing.assert_allclose(gs.cov(), cov, rtol=1e-6)


@pytest.mark.parametrize("k, dim, phase", [(8, 2, 0.0), (5, 3, 0.4)])
def test_ring_is_invariant_under_rotation(k, dim, phase):
    target = ring(k=k, dim=dim, phase=phase)
    x = _probe_points(jr.key(3), dim, scale=3.0)

    def rotate(x, angle):
        c, s = np.cos(angle), np.sin(angle)
        r = np.eye(dim)
        r[:2, :2] = [[c, -s], [s, c]]
        return x @ jnp.asarray(r, jnp.float32).T

    base = target.log_prob(x)
    # float32: the rotated point is off by |dx| <= 4 eps |x| and log p is evaluated with
    # relative error <= 4 eps (eps = 2^-23), so |change| <= 4 eps (|score| |x| + |log p|); we
    # allow twice that.
    eps = np.finfo(np.float32).eps
    size = np.linalg.norm(target.score(x), axis=-1) * np.linalg.norm(x, axis=-1)
    tol = 8 * eps * (size + np.abs(base))
    for j in (1, 2, k - 1):
        change = np.abs(target.log_prob(rotate(x, 2 * np.pi * j / k)) - base)
        assert np.all(change <= tol), (j, np.max(change / tol))
    # Control: half that rotation moves generic points off the symmetric positions.
    assert np.max(np.abs(target.log_prob(rotate(x, np.pi / k)) - base)) > 0.1


MEANS, COVS = jnp.zeros((2, 2)), jnp.stack([jnp.eye(2)] * 2)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: GaussianMixture(jnp.array([0.5, 0.6]), MEANS, COVS), "weights must sum to one"),
        (lambda: GaussianMixture(jnp.array([0.5, 0.4]), MEANS, COVS), "weights must sum to one"),
        (lambda: GaussianMixture(jnp.array([-0.5, 1.5]), MEANS, COVS),
         "weights must be non-negative"),
        (lambda: GaussianMixture(jnp.array([0.5, 0.5]), MEANS.at[1, 0].set(jnp.nan), COVS),
         "means contains NaN"),
        (lambda: GaussianMixture(jnp.array([0.5, 0.5]), MEANS, COVS.at[0, 0, 0].set(jnp.inf)),
         "covs contains NaN"),
        (lambda: GaussianMixture(jnp.array([0.5, jnp.nan]), MEANS, COVS), "weights contains NaN"),
        (lambda: GaussianMixture(jnp.array([0.5, 0.5]), MEANS, jnp.stack([jnp.eye(3)] * 2)),
         "covs must have shape"),
        (lambda: GaussianMixture(jnp.array([0.5, 0.5]), MEANS, COVS[:1]), "covs must have shape"),
        (lambda: GaussianMixture(jnp.array([0.2, 0.3, 0.5]), MEANS, COVS),
         "means must have shape"),
        (lambda: GaussianMixture(jnp.array([[1.0]]), MEANS[:1], COVS[:1]),
         "weights must have shape"),
        (lambda: GaussianMixture(jnp.array([0.5, 0.5]), MEANS,
                                 COVS.at[0].set(jnp.array([[1.0, 0.0], [1.0, 1.0]]))),
         "covs must be symmetric"),
        (lambda: GaussianMixture(jnp.array([0.5, 0.5]), MEANS, -COVS),
         "covs must be positive definite"),
        (lambda: GaussianMixture.isotropic(jnp.array([0.5, 0.5]), MEANS, 0.0), "std must be > 0"),
        (lambda: ring(k=0), "k must be"),
        (lambda: grid(n=0), "n must be"),
        (lambda: two_moons(k=1), "k must be"),
        (lambda: ring(dim=1), "dim must be"),
    ],
)
def test_bad_mixture(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("method", ["log_prob", "score", "responsibilities"])
@pytest.mark.parametrize("shape", [(5, 3), (3,), (4, 1)])
def test_wrong_dimension_of_x(method, shape):
    with pytest.raises(ValueError, match="x must have last axis d=2"):
        getattr(ring(), method)(jnp.zeros(shape))


@pytest.mark.parametrize("t, T", [(-0.01, 1.0), (1.01, 1.0), (2.5, 2.0)])
def test_diffuse_rejects_time_outside_range(t, T):
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        ring().diffuse(VPSDE(0.1, 20.0, T=T), jnp.asarray(t))


@pytest.mark.parametrize("sde", [VPSDE(0.1, 20.0), VESDE(0.01, 10.0)], ids=["vp", "ve"])
def test_diffuse_rejects_time_outside_range_when_traced(sde):
    target, x = ring(), jnp.zeros(2)
    f = eqx.filter_jit(lambda t: target.diffuse(sde, t).log_prob(x))
    f(jnp.asarray(0.5))
    with pytest.raises(eqx.EquinoxRuntimeError, match="t must lie in"):
        f(jnp.asarray(-0.5))

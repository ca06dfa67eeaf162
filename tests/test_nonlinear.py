"""sg.nonlinear: the Langevin SDE, the Euler chain, NDSM and its control variates.

Monte-Carlo comparisons allow `C_SE` standard errors (tests/helpers.py); any deterministic error
(the Euler step) is bounded separately and written beside the check.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import C_SE, assert_mc_close, count_compiles, mean_se

import sgmteach as sg
from sgmteach import nonlinear as nl

KEY = jr.key(0)


def imbalanced(d=2):
    means = jnp.zeros((2, d)).at[:, 0].set(jnp.array([-2.0, 2.0]))
    return sg.GaussianMixture.isotropic(jnp.array([0.9, 0.1]), means, 0.4)


@pytest.fixture(scope="module")
def sde():
    return nl.LangevinSDE(imbalanced(), 0.1, 10.0)


def small_mlp(d=2, key=KEY):
    return sg.ScoreMLP(d, 16, 1, key=key, embed_size=4)


# --- LangevinSDE -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["standard_reference", "strength_0"])
def test_langevin_reduces_to_vp(case):
    vp = sg.VPSDE(0.1, 10.0)
    if case == "standard_reference":
        sde = nl.LangevinSDE(sg.gaussian(jnp.zeros(3), jnp.eye(3)), 0.1, 10.0, strength=0.6)
    else:
        sde = nl.LangevinSDE(imbalanced(3), 0.1, 10.0, strength=0.0, width=2.0)
    x = 3.0 * jr.normal(KEY, (64, 3))
    for t in (0.0, 0.37, 1.0):
        f = jax.vmap(sde.drift, (0, None))(x, t)
        f_vp = jax.vmap(vp.drift, (0, None))(x, t)
        # Round-off only: |f| <= 5 * 10 here, float32 eps 1.2e-7.
        np.testing.assert_allclose(f, f_vp, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sde.diffusion(t), vp.diffusion(t), rtol=1e-6)
    # The prior: rho is N(0, I) exactly (VP's prior), checked as densities.
    np.testing.assert_allclose(sde.rho().log_prob(x), sg.gaussian(jnp.zeros(3),
                               jnp.eye(3)).log_prob(x), rtol=1e-5, atol=1e-5)
    draws = np.asarray(sde.prior_sample(20_000, 3, key=KEY), np.float64)
    m, se = mean_se(draws)
    assert_mc_close(m, 0.0, se, what="prior mean")
    v, v_se = mean_se(draws**2)
    assert_mc_close(v, 1.0, v_se, what="prior second moment")


def test_rho_is_the_strength_width_mixture(sde):
    wide = nl.LangevinSDE(imbalanced(), 0.1, 10.0, strength=0.3, width=1.5)
    rho = wide.rho()
    np.testing.assert_allclose(rho.weights, [0.7, 0.27, 0.03], rtol=1e-6)
    np.testing.assert_allclose(rho.covs[1], 1.5**2 * 0.4**2 * np.eye(2), rtol=1e-6)
    np.testing.assert_allclose(rho.covs[0], np.eye(2))
    # The drift is (beta/2) grad log rho.
    x = jr.normal(KEY, (5, 2))
    np.testing.assert_allclose(jax.vmap(wide.drift, (0, None))(x, 0.5),
                               0.5 * wide.beta(0.5) * rho.score(x), rtol=1e-6)


def test_reference_is_invariant(sde):
    """Particles started at rho stay at rho: sliced W1 after the forward chain within 1.5x of
    the floor (two independent rho samples of the same size)."""
    n = 2000
    x0 = sde.prior_sample(n, 2, key=jr.key(1))
    # h = 1/400: Euler's stationary variance inside a component is s^2 / (1 - a h / 2), a the
    # drift rate beta/(2 s^2) <= 31: a 4% variance error at worst, below the floor at this n.
    xs, _ = nl.euler_paths(sde, x0, 400, key=jr.key(2))
    swd = functools.partial(sg.sliced_wasserstein, key=jr.key(3))
    floor = sg.mc_floor(swd, sde.rho(), n, key=jr.key(4), repeats=5)
    fresh = sde.rho().sample(n, key=jr.key(5))
    d_end = swd(np.asarray(xs[-1]), np.asarray(fresh))
    assert d_end <= 1.5 * floor.mean, (d_end, floor)
    # And the mode weights stay (metastability does not move them either).
    assert_mc_close(float((xs[-1][:, 0] > 0).mean()), 0.1, np.sqrt(0.09 / n), what="weight")


def test_no_recompile_when_values_move(sde):
    @eqx.filter_jit
    def drift_of(s, x):
        return jax.vmap(s.drift, (0, None))(x, 0.5)

    x = jr.normal(KEY, (8, 2))
    drift_of(sde, x)
    with count_compiles("drift_of") as n:
        for lam, kappa, bmax in ((0.0, 0.5, 5.0), (0.5, 2.0, 20.0), (1.0, 1.0, 10.0)):
            drift_of(nl.LangevinSDE(imbalanced(), 0.1, bmax, strength=lam, width=kappa), x)
    assert len(n) == 0, n


@pytest.mark.parametrize("kwargs, match", [
    (dict(strength=1.5), "strength must lie in"),
    (dict(strength=-0.1), "strength must lie in"),
    (dict(width=0.0), "width must be"),
    (dict(width=-1.0), "width must be"),
])
def test_langevin_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nl.LangevinSDE(imbalanced(), 0.1, 10.0, **kwargs)

    @jax.jit
    def build(v):
        name = next(iter(kwargs))
        s = nl.LangevinSDE(imbalanced(), 0.1, 10.0, **{name: v})
        return s.drift(jnp.ones(2), 0.5)

    with pytest.raises(Exception, match=match):
        jax.block_until_ready(build(jnp.asarray(next(iter(kwargs.values())))))


def test_langevin_bad_structure():
    with pytest.raises(TypeError, match="GaussianMixture"):
        nl.LangevinSDE(np.zeros((2, 2)), 0.1, 10.0)
    with pytest.raises(ValueError, match="beta_min"):
        nl.LangevinSDE(imbalanced(), 10.0, 1.0)
    with pytest.raises(ValueError, match="dimension"):
        nl.LangevinSDE(imbalanced(), 0.1, 10.0).prior_sample(4, 3, key=KEY)


def test_sample_runs_the_reverse_process(sde):
    """`sg.sample` reverses the Langevin SDE unchanged: with the exact score (data = rho, so
    p_t = rho at all t) its samples are rho's: their sliced W1 to fresh draws of rho lies
    within 4 standard deviations of that statistic between two samples of rho (the floor's own
    spread, which is large here: a mode weight off by 1/sqrt(n) moves W1 by 4/sqrt(n))."""
    n = 2000
    x = sg.sample(nl.ReferenceScore(sde.rho()), sde, n, 2, key=jr.key(6), steps=500, t0=1e-3)
    swd = functools.partial(sg.sliced_wasserstein, key=jr.key(3))
    floor = sg.mc_floor(swd, sde.rho(), n, key=jr.key(4), repeats=20)
    d = swd(np.asarray(x), np.asarray(sde.rho().sample(n, key=jr.key(7))))
    assert d <= floor.mean + 4 * floor.std, (d, floor)


def test_trajectories_run_the_reverse_process(sde):
    """`sg.trajectories` too: the snapshots start at exact draws of rho (the prior) and, with the
    exact score, stay at rho's small-mode weight 0.1 at every saved time (binomial s.e.)."""
    n = 4000
    ts, xs = sg.trajectories(nl.ReferenceScore(sde.rho()), sde, n, 2, key=jr.key(21),
                             steps=200, n_saves=4)
    assert xs.shape == (5, n, 2) and float(ts[0]) == float(sde.T)
    np.testing.assert_array_equal(xs[0], sde.prior_sample(n, 2, key=jr.split(jr.key(21))[0]))
    shares = np.asarray((xs[..., 0] > 0).mean(axis=1))
    assert_mc_close(shares, 0.1, np.sqrt(0.09 / n), what="small-mode share along the way")


# --- fit_reference ---------------------------------------------------------------------------


def test_fit_reference_recovers_the_mixture():
    target = imbalanced()
    n = 4000
    fit = nl.fit_reference(target.sample(n, key=jr.key(8)), 2, key=KEY)
    order = np.argsort(np.asarray(fit.means[:, 0]))
    # Well-separated modes: EM's weights are the cluster shares, binomial s.e. sqrt(w(1-w)/n).
    assert_mc_close(np.asarray(fit.weights)[order], [0.9, 0.1], np.sqrt(0.09 / n),
                    what="fitted weights")
    # Means: s.e. std / sqrt(n w) per coordinate.
    se = 0.4 / np.sqrt(n * np.array([0.9, 0.1]))[:, None]
    assert_mc_close(np.asarray(fit.means)[order], np.asarray(target.means), se, what="means")
    for cov in ("diag", "spherical"):
        f = nl.fit_reference(target.sample(n, key=jr.key(8)), 2, key=KEY, covariance_type=cov)
        assert f.covs.shape == (2, 2, 2)


def test_fit_reference_bad_input():
    data = imbalanced().sample(10, key=KEY)
    with pytest.raises(ValueError, match="k must be"):
        nl.fit_reference(data, 0, key=KEY)
    with pytest.raises(ValueError, match="at least k points"):
        nl.fit_reference(data, 11, key=KEY)
    with pytest.raises(ValueError, match="NaN"):
        nl.fit_reference(data.at[3, 1].set(jnp.nan), 2, key=KEY)
    with pytest.raises(ValueError, match="covariance_type"):
        nl.fit_reference(data, 2, key=KEY, covariance_type="tied")
    ints = np.random.default_rng(0).integers(0, 9, size=(10, 2))
    assert nl.fit_reference(ints, 1, key=KEY).means.dtype == jnp.float32


# --- the Euler chain -------------------------------------------------------------------------


def test_euler_paths_are_the_chain(sde):
    x0 = imbalanced().sample(7, key=KEY)
    xs, zs = nl.euler_paths(sde, x0, 20, key=jr.key(9))
    assert xs.shape == (21, 7, 2) and zs.shape == (20, 7, 2)
    np.testing.assert_array_equal(xs[0], x0)
    ts = nl.euler_times(sde, 20)
    h = 1.0 / 20
    for k in (0, 7, 19):
        step = xs[k] + h * jax.vmap(sde.drift, (0, None))(xs[k], ts[k]) \
            + sde.diffusion(ts[k]) * jnp.sqrt(h) * zs[k]
        np.testing.assert_allclose(xs[k + 1], step, rtol=1e-5, atol=1e-5)
    # Same as ndsm's one step.
    mu, x1, _ = nl.euler_step(sde, xs[3], jnp.full(7, ts[3]), h, zs[3])
    np.testing.assert_allclose(x1, xs[4], rtol=1e-5, atol=1e-5)


def test_euler_paths_bad_input(sde):
    with pytest.raises(ValueError, match="shape"):
        nl.euler_paths(sde, jnp.ones(3), 5, key=KEY)
    with pytest.raises(ValueError, match="dimension"):
        nl.euler_paths(sde, jnp.ones((3, 3)), 5, key=KEY)
    with pytest.raises(ValueError, match="steps"):
        nl.euler_paths(sde, jnp.ones((3, 2)), 0, key=KEY)
    with pytest.raises(ValueError, match="NaN"):
        nl.euler_paths(sde, jnp.ones((3, 2)).at[1, 1].set(jnp.inf), 5, key=KEY)


# --- NDSM losses -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain_states(sde):
    """Chain states off the reference: the end of a 10-step chain (h = 0.1) from other data
    (n = 40 000). Any states serve the loss identities below, which hold for every law of X_k."""
    data = sg.GaussianMixture.isotropic(jnp.array([0.5, 0.5]), jnp.array([[-1.0, 1.0],
                                        [1.5, -0.5]]), 0.5).sample(40_000, key=jr.key(10))
    xs, _ = nl.euler_paths(sde, data, 10, key=jr.key(11))
    return xs[-1]


@pytest.mark.parametrize("h", [1e-1, 1e-2, 1e-3])
def test_raw_minus_controlled_is_the_constant(sde, chain_states, h):
    """E[raw] - E[CV] = d/(sigma^2 h) (weighting "none"), with common random numbers."""
    model = small_mlp()
    z = jr.normal(jr.key(12), chain_states.shape)
    t = 0.5
    raw = nl.ndsm_losses(model, sde, chain_states, t, h, z=z, weighting="none")
    cv = nl.ndsm_losses(model, sde, chain_states, t, h, z=z, weighting="none",
                        control_variate="plugin")
    const = float(nl.ndsm_constant(sde, t, h, 2, weighting="none"))
    np.testing.assert_allclose(const, 2.0 / (sde.beta(t) * h), rtol=1e-5)
    diff, se = mean_se(np.asarray(raw) - np.asarray(cv))
    assert_mc_close(diff, const, se, what=f"E[raw] - E[CV] at h={h}")
    # The variance problem: raw spread ~ sqrt(2d)/(sigma^2 h); the controlled one does not grow.
    assert np.std(raw) > 0.5 * np.sqrt(4.0) / (float(sde.beta(t)) * h)
    assert np.std(cv) < 0.1 * np.std(raw) if h <= 1e-2 else True


def test_cv_spread_is_flat_in_h(sde, chain_states):
    z = jr.normal(jr.key(13), chain_states.shape)
    model = small_mlp()
    stds = [float(np.std(nl.ndsm_losses(model, sde, chain_states, 0.5, h, z=z,
                                        weighting="none", control_variate="plugin")))
            for h in (1e-2, 1e-3, 1e-4)]
    # Flat: within 20% across two decades (it converges to the ISM integrand's spread as h -> 0).
    assert max(stds) / min(stds) < 1.2, stds


def _per_sample_grads(model, sde, x, t, h, z, **kw):
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def one(xi, zi):
        def f(p):
            return nl.ndsm_loss(eqx.combine(p, static), sde, xi[None], t, h, z=zi[None], **kw)
        g = jax.grad(f)(params)
        return jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(g)])

    return jax.vmap(one)(x, z)


def test_controlled_gradient_is_unbiased(sde, chain_states):
    """The plug-in CV's gradient has the raw gradient's mean (the subtracted term has zero mean
    for every theta): the per-sample gradient differences average to 0 within C_SE s.e.,
    coordinate by coordinate. And the spread drops (h = 1e-3)."""
    model, h = small_mlp(), 1e-3
    x = chain_states[:20_000]
    z = jr.normal(jr.key(14), x.shape)
    g_raw = np.asarray(_per_sample_grads(model, sde, x, 0.5, h, z, weighting="sigma2h"))
    g_cv = np.asarray(_per_sample_grads(model, sde, x, 0.5, h, z, weighting="sigma2h",
                                        control_variate="plugin"))
    diff, se = mean_se(g_raw - g_cv)
    # Bonferroni over the coordinates: c = 5 s.e. keeps the family-wise false alarm < 1e-4.
    assert_mc_close(diff, 0.0, se, what="mean gradient difference")
    assert g_cv.std(0).sum() < 0.2 * g_raw.std(0).sum()


def test_neural_cv_gradients(sde, chain_states):
    """Neural CV: the notes' theta-free c_phi leaves the theta-gradient exactly the raw one; the
    residual form's gradient is exactly the plug-in's."""
    model, h = small_mlp(), 1e-2
    x = chain_states[:64]
    z = jr.normal(jr.key(15), x.shape)
    free = nl.init_control_variate(2, key=jr.key(16), residual=False)
    resid = eqx.tree_at(lambda m: m.mlp.layers[-1].bias,
                        nl.init_control_variate(2, key=jr.key(16)), jnp.ones(2))
    g = {name: _per_sample_grads(model, sde, x, 0.5, h, z, **kw).mean(0) for name, kw in {
        "raw": dict(),
        "plugin": dict(control_variate="plugin"),
        "free": dict(control_variate="neural", cv_model=free, residual=False),
        "resid": dict(control_variate="neural", cv_model=resid),
    }.items()}
    np.testing.assert_allclose(g["free"], g["raw"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(g["resid"], g["plugin"], rtol=2e-4, atol=2e-4)
    # The residual CV starts at the plug-in one.
    start = nl.init_control_variate(2, key=jr.key(16))
    a = nl.ndsm_losses(model, sde, x, 0.5, h, z=z, control_variate="neural", cv_model=start)
    b = nl.ndsm_losses(model, sde, x, 0.5, h, z=z, control_variate="plugin")
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_small_h_limit_is_implicit_score_matching(sde, chain_states):
    """As h -> 0, E[CV] (weighting "none") -> E||s||^2 + 2 div s at the chain's states
    (Hyvaerinen). Bias O(h) (the finite difference's even terms; mu = x + O(h)), below 1e-2 at
    h = 1e-5 for this smooth s; the rest is Monte Carlo."""
    model, h, t = small_mlp(), 1e-5, 0.5
    x = chain_states
    z = jr.normal(jr.key(17), x.shape)
    cv = np.asarray(nl.ndsm_losses(model, sde, x, t, h, z=z, weighting="none",
                                   control_variate="plugin"), np.float64)
    t1 = jnp.asarray(t + h)

    def ism(xi):
        s = model(xi, t1)
        return jnp.sum(s**2) + 2 * jnp.trace(jax.jacfwd(model)(xi, t1))

    exact = np.asarray(jax.vmap(ism)(x), np.float64)
    d, se = mean_se(cv - exact)
    assert_mc_close(d, 0.0, se, bias=1e-2, what="CV - ISM")


def test_ndsm_loss_bad_input(sde):
    model, x = small_mlp(), jnp.ones((4, 2))
    z = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="h must be > 0"):
        nl.ndsm_loss(model, sde, x, 0.5, 0.0, z=z)
    with pytest.raises(ValueError, match="h must be > 0"):
        nl.ndsm_loss(model, sde, x, 0.5, -1e-3, z=z)
    with pytest.raises(ValueError, match="t \\+ h"):
        nl.ndsm_loss(model, sde, x, 0.99, 0.1, z=z)
    with pytest.raises(ValueError, match="exactly one"):
        nl.ndsm_loss(model, sde, x, 0.5, 0.01)
    with pytest.raises(ValueError, match="shape of x"):
        nl.ndsm_loss(model, sde, x, 0.5, 0.01, z=jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="control_variate"):
        nl.ndsm_loss(model, sde, x, 0.5, 0.01, z=z, control_variate="magic")
    with pytest.raises(ValueError, match="cv_model"):
        nl.ndsm_loss(model, sde, x, 0.5, 0.01, z=z, control_variate="neural")
    with pytest.raises(ValueError, match="weighting"):
        nl.ndsm_loss(model, sde, x, 0.5, 0.01, z=z, weighting="sigma2")
    with pytest.raises(Exception, match="h must be > 0"):
        jax.jit(lambda h: nl.ndsm_loss(model, sde, x, 0.5, h, z=z))(jnp.asarray(-0.1))


# --- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cv", ["plugin", "neural"])
def test_train_ndsm_learns_the_stationary_score(sde, cv):
    """Data drawn from rho itself: the chain's score is grad log rho at every t (up to O(h)).
    After a short NDSM run the learned score is close to it where the data is."""
    data = sde.rho().sample(1000, key=jr.key(18))
    out = nl.train_ndsm(sg.ScoreMLP(2, 64, 2, key=KEY), sde, data, key=jr.key(19),
                        steps=1500, n_steps=50, control_variate=cv, progress=False)
    model, losses = out[0], out[1]
    assert len(out) == (3 if cv == "neural" else 2) and losses.shape == (1500,)
    x = sde.rho().sample(2000, key=jr.key(20))
    for t in (0.1, 0.5, 0.9):
        err = jax.vmap(model, (0, None))(x, jnp.asarray(t)) - sde.rho().score(x)
        rel = float(jnp.mean(jnp.sum(err**2, -1)) / jnp.mean(jnp.sum(sde.rho().score(x)**2, -1)))
        # A 64x2 MLP after 1500 steps: well inside 10% relative mean-square error.
        assert rel < 0.1, (t, rel)


def test_train_ndsm_bad_input(sde):
    model = small_mlp()
    data = jnp.ones((5, 2))
    with pytest.raises(ValueError, match="control_variate"):
        nl.train_ndsm(model, sde, data, key=KEY, control_variate="cv")
    with pytest.raises(ValueError, match="n_steps"):
        nl.train_ndsm(model, sde, data, key=KEY, n_steps=0)
    with pytest.raises(ValueError, match="dimension"):
        nl.train_ndsm(model, sde, jnp.ones((5, 3)), key=KEY)
    with pytest.raises(TypeError, match="AbstractSDE"):
        nl.train_ndsm(model, object(), data, key=KEY)


def test_c_se_is_the_suite_constant():
    assert C_SE == 5.0


def test_ndsm_minimiser_is_the_chain_score():
    """The minimiser of the raw NDSM loss over a rich model is the Euler chain's score.

    The richest model at one time: a constant per bin of x_{k+1}. Its least-squares fit to the
    target -Z/(sigma sqrt h) is the bin mean, E[-Z/(sigma sqrt h) | X_{k+1} in bin], the
    p-weighted bin average of the chain's score. Compared with `fokker_planck`'s exact score
    of the SDE averaged the same way: within C_SE s.e. (the target's spread is 1/(sigma sqrt h),
    about 15 here) plus 0.05 for the chain's O(h) bias against the SDE (h = 0.002, drift rate
    below 10: h * rate < 0.02) and the grid's O(dx^2).
    """
    ref = sg.GaussianMixture.isotropic(jnp.array([0.7, 0.3]), jnp.array([[-1.5], [1.5]]), 0.5)
    sde = nl.LangevinSDE(ref, 0.1, 10.0)
    p0_law = sg.gaussian(jnp.array([0.5]), jnp.array([[0.8**2]]))
    # h = 0.002 up to t_k = 0.2, stepped here (euler_paths would store all 10^6 x 500 states).
    n, h, k = 1_000_000, 0.002, 100
    step = jax.jit(lambda x, t, key: nl.euler_step(sde, x, jnp.full(n, t), h,
                                                   jr.normal(key, x.shape))[1])
    xk = p0_law.sample(n, key=jr.key(30))
    for i, kk in enumerate(jr.split(jr.key(31), k)):
        xk = step(xk, i * h, kk)
    tk = k * h
    z = jr.normal(jr.key(32), xk.shape)
    _, x1, sd = nl.euler_step(sde, xk, jnp.full(n, tk), h, z)
    target = np.asarray(-z[:, 0] / sd, np.float64)
    x1 = np.asarray(x1[:, 0], np.float64)
    grid = jnp.linspace(-6.0, 6.0, 401)
    p, score = nl.fokker_planck(sde, jnp.exp(p0_law.log_prob(grid[:, None])), grid,
                                jnp.array([0.0, tk + h]))
    p, score = np.asarray(p[1]), np.asarray(score[1, :, 0])
    g = np.asarray(grid)
    edges = np.arange(-3.0, 3.01, 0.25)
    checked = 0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (x1 >= lo) & (x1 < hi)
        if inside.sum() < 5000:  # too few points for a useful standard error
            continue
        est, se = mean_se(target[inside])
        on = (g >= lo) & (g < hi)
        exact = np.sum(p[on] * score[on]) / np.sum(p[on])
        assert_mc_close(est, exact, se, bias=0.05, what=f"bin [{lo:.2f}, {hi:.2f})")
        checked += 1
    assert checked >= 12  # the check covers the bulk of both modes

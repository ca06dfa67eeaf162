"""Forward SDEs: closed-form marginals against simulation, quadrature and the moment ODEs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import assert_mc_close, em_moments, linear_coefficients, mean_se
from scipy.integrate import quad

from sgmteach import VESDE, VPSDE, SubVPSDE

# Factories, so that an SDE built inside the `x64` fixture has float64 fields. T = 2 for some
# of them, so that a forgotten t/T shows up.
SDES = {
    "vp-linear": lambda: VPSDE(0.1, 20.0),
    "vp-cosine": lambda: VPSDE(0.1, 20.0, schedule="cosine", T=2.0),
    "subvp-linear": lambda: SubVPSDE(0.1, 20.0, T=2.0),
    "subvp-cosine": lambda: SubVPSDE(0.1, 20.0, schedule="cosine"),
    "ve": lambda: VESDE(0.01, 5.0),
}
VP_LIKE = ["vp-linear", "vp-cosine", "subvp-linear", "subvp-cosine"]
_S = 0.008  # Nichol & Dhariwal's cosine offset


@eqx.filter_jit
def _euler_maruyama(sde, x0, key, steps: int, save_every: int):
    """Forward Euler–Maruyama for a scalar state per particle, saving every `save_every` steps."""
    h = sde.T / steps

    def step(x, i):
        t = i * h
        z = jr.normal(jr.fold_in(key, i), x.shape)
        return x + sde.drift(x, t) * h + sde.diffusion(t) * jnp.sqrt(h) * z, None

    def block(x, j):
        x, _ = jax.lax.scan(step, x, j * save_every + jnp.arange(save_every))
        return x, x

    return jax.lax.scan(block, x0, jnp.arange(steps // save_every))[1]  # (saves, n)


@pytest.mark.parametrize("name", SDES)
def test_marginal_moments_match_euler_maruyama(name):
    sde = SDES[name]()
    mu0, sd0, n, steps, save_every = 1.5, 0.5, 20_000, 2000, 500
    x0 = mu0 + sd0 * jr.normal(jr.key(0), (n,))
    xs = np.asarray(_euler_maruyama(sde, x0, jr.key(1), steps, save_every), np.float64)
    ts = float(sde.T) * np.arange(1, steps // save_every + 1) / (steps // save_every)
    m, s = (np.asarray(v, np.float64) for v in jax.vmap(sde.marginal_mean_std)(jnp.asarray(ts)))
    exact_mean, exact_var = m * mu0, m**2 * sd0**2 + s**2

    # Time-discretisation bias of Euler–Maruyama. Its weak order is 1: the exact moments of the
    # chain (float64 recursion, drift and diffusion only) are R(h) = R(0) + C h + O(h^2), so
    # C h ~ 2 |R(h) - R(h/2)|; we allow 3 |R(h) - R(h/2)| (50% for the O(h^2) remainder).
    h = float(sde.T) / steps
    a, g2 = linear_coefficients(sde, (h / 2) * np.arange(2 * steps))  # the grid t_i = i h / 2
    coarse = em_moments(a[::2], g2[::2], h, mu0, sd0**2, save_every)
    fine = em_moments(a, g2, h / 2, mu0, sd0**2, 2 * save_every)
    bias_mean, bias_var = (3 * np.abs(c - f) for c, f in zip(coarse, fine, strict=True))

    mean, se_mean = mean_se(xs, axis=1)
    # X_t is Gaussian here; the s.e. of the sample variance is the sample std of (x - mean)^2
    # over sqrt(n) (plug-in, ~ var sqrt(2/n)).
    sq = (xs - mean[:, None]) ** 2
    var, se_var = mean_se(sq, axis=1)
    assert_mc_close(mean, exact_mean, se_mean, bias=bias_mean, what=f"{name} mean")  # 5 s.e.
    assert_mc_close(var, exact_var, se_var, bias=bias_var, what=f"{name} variance")  # 5 s.e.


@eqx.filter_jit
def _moments_and_derivatives(sde, ts):
    mean = lambda t: sde.marginal_mean_std(t)[0]
    var = lambda t: sde.marginal_mean_std(t)[1] ** 2
    return (jax.vmap(mean)(ts), jax.vmap(var)(ts), jax.vmap(jax.jacfwd(mean))(ts),
            jax.vmap(jax.jacfwd(var))(ts))


@pytest.mark.parametrize("name", SDES)
def test_moment_odes_from_drift_and_diffusion(name, x64):
    # For dx = a(t) x dt + g dW the transition moments solve dm/dt = a m and
    # d(s^2)/dt = 2 a s^2 + g^2 (Fokker–Planck for the first two moments), m_0 = 1, s_0 = 0.
    sde = SDES[name]()
    T = float(sde.T)
    # (t = T itself: see test_cosine_rate_at_T.)
    ts = jnp.asarray([0.004, 0.05, 0.3, 0.6, 0.95, 0.999]) * T
    m, v, dm, dv = _moments_and_derivatives(sde, ts)
    a, g2 = linear_coefficients(sde, ts)
    # float64 autodiff of closed forms: rounding ~1e-16 times a cancellation of at most
    # 1 / m_T^2 ~ e^10 (VP: 2 a s^2 + g^2 = beta m^2), so 1e-9 relative is ample.
    np.testing.assert_allclose(dm, a * np.asarray(m), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dv, 2 * a * np.asarray(v) + g2, rtol=1e-9, atol=1e-12)
    zero_m, zero_s = sde.marginal_mean_std(jnp.asarray(0.0))
    assert float(zero_m) == 1.0 and float(zero_s) == 0.0  # X_0 = x_0 exactly


@pytest.mark.parametrize("name", VP_LIKE)
def test_integrated_rate_matches_quadrature(name, x64):
    # m_t = exp(-B(t)/2) with B(t) = int_0^t beta; the cosine rate is clipped to
    # [beta_min, beta_max], which puts two kinks in beta that the closed form must follow.
    sde = SDES[name]()
    beta = jax.jit(lambda u: sde.beta(u))
    for frac in (0.01, 0.2, 0.5, 0.9, 0.95, 1.0):
        t = frac * float(sde.T)
        exact, abserr = quad(lambda u: float(beta(u)), 0.0, t, epsabs=1e-12, epsrel=1e-12,
                             limit=200)
        B = -2.0 * float(jnp.log(sde.marginal_mean_std(jnp.asarray(t))[0]))
        # quad's own error estimate (x10) plus float64 rounding of the closed form.
        assert abs(B - exact) <= 10 * abserr + 1e-11 * (1 + exact), (name, t, B, exact)


def test_ve_variance_matches_quadrature(x64):
    # VE: m_t = 1 and s_t^2 = int_0^t g^2.
    sde = SDES["ve"]()
    g2 = jax.jit(lambda u: sde.diffusion(u) ** 2)
    for t in (0.01, 0.3, 0.7, 1.0):
        exact, abserr = quad(lambda u: float(g2(u)), 0.0, t, epsabs=1e-12, epsrel=1e-12)
        m, s = sde.marginal_mean_std(jnp.asarray(t))
        assert float(m) == 1.0
        assert abs(float(s) ** 2 - exact) <= 10 * abserr + 1e-11 * (1 + exact)


@pytest.mark.parametrize("kind", [VPSDE, SubVPSDE])
def test_cosine_schedule_is_clipped_nichol_dhariwal(kind, x64):
    # alpha_bar(t) = cos^2(pi/2 (t/T + s)/(1 + s)) (up to a constant); beta = d/dt(-log alpha_bar),
    # clipped to [beta_min, beta_max].
    T, bmin, bmax = 2.0, 0.1, 20.0
    sde = kind(bmin, bmax, schedule="cosine", T=T)
    log_abar = lambda t: 2 * jnp.log(jnp.cos(0.5 * jnp.pi * (t / T + _S) / (1 + _S)))
    ts = jnp.linspace(0.0, T, 201)[:-1]  # t = T: see test_cosine_rate_at_T
    rate = jax.jit(jax.vmap(jax.grad(lambda t: -log_abar(t))))
    expected = jnp.clip(rate(ts), bmin, bmax)
    beta = eqx.filter_jit(lambda sde, ts: jax.vmap(sde.beta)(ts))(sde, ts)
    np.testing.assert_allclose(beta, expected, rtol=1e-12)
    # Both clips are active on [0, T), so the kinks are exercised.
    assert float(sde.beta(ts[0])) == bmin and float(sde.beta(ts[-1])) == bmax


@pytest.mark.parametrize("T", [1.0, 2.0])
@pytest.mark.parametrize("kind", [VPSDE, SubVPSDE])
def test_cosine_rate_at_T(kind, T):
    # beta is non-decreasing, and beta(t) = beta_max on [u_hi T, T]: the reverse SDE and the
    # probability-flow ODE start by evaluating g(T)^2 = beta(T) (times 1 - e^{-2B} for sub-VP).
    sde = kind(0.1, 20.0, schedule="cosine", T=T)
    assert float(sde.beta(jnp.asarray(0.999 * T))) == 20.0
    assert float(sde.beta(jnp.asarray(T))) == 20.0


def test_linear_schedule_by_hand(x64):
    bmin, bmax, T = 0.1, 20.0, 2.0
    vp, sub = VPSDE(bmin, bmax, T=T), SubVPSDE(bmin, bmax, T=T)
    assert float(vp.beta(jnp.asarray(0.0))) == bmin
    np.testing.assert_allclose(vp.beta(jnp.asarray(T)), bmax, rtol=1e-15)
    np.testing.assert_allclose(vp.beta(jnp.asarray(T / 2)), (bmin + bmax) / 2, rtol=1e-15)
    # B(T) = (beta_min + beta_max) T / 2, so m_T = exp(-(beta_min + beta_max) T / 4).
    m_T = np.exp(-(bmin + bmax) * T / 4)
    ts = jnp.linspace(0.0, T, 11)
    m, s = jax.vmap(vp.marginal_mean_std)(ts)
    np.testing.assert_allclose(m[-1], m_T, rtol=1e-13)
    np.testing.assert_allclose(m**2 + s**2, 1.0, rtol=1e-14)  # variance preserving
    m_sub, s_sub = jax.vmap(sub.marginal_mean_std)(ts)
    np.testing.assert_allclose(m_sub, m, rtol=1e-14)  # same mean as VP
    np.testing.assert_allclose(s_sub, 1.0 - m**2, rtol=1e-14, atol=1e-16)  # s = 1 - e^{-B}


def test_ve_by_hand(x64):
    smin, smax, T = 0.01, 5.0, 2.0
    sde = VESDE(smin, smax, T=T)
    ts = jnp.linspace(0.0, T, 11)
    sigma = smin * (smax / smin) ** (ts / T)
    m, s = jax.vmap(sde.marginal_mean_std)(ts)
    np.testing.assert_array_equal(m, 1.0)
    np.testing.assert_allclose(s**2, sigma**2 - smin**2, rtol=1e-13, atol=1e-18)
    g = jax.vmap(sde.diffusion)(ts)
    np.testing.assert_allclose(g, sigma * np.sqrt(2 * np.log(smax / smin) / T), rtol=1e-14)
    np.testing.assert_array_equal(jax.vmap(lambda t: sde.drift(jnp.ones(3), t))(ts), 0.0)


@pytest.mark.parametrize("name", SDES)
def test_prior_at_T(name, x64):
    # The marginal at T of any bounded data is close to the prior N(0, prior_std^2 I):
    # VP: s_T^2 = 1 - m_T^2; sub-VP: s_T = 1 - m_T^2; VE: s_T^2 = sigma_max^2 - sigma_min^2.
    sde = SDES[name]()
    m_T, s_T = (float(v) for v in sde.marginal_mean_std(sde.T))
    p = float(sde.prior_std())
    if name == "ve":
        assert m_T == 1.0 and p == 5.0
        np.testing.assert_allclose(s_T**2, p**2 - 0.01**2, rtol=1e-14)
    else:
        assert p == 1.0
        # Linear: B(T) = (0.1 + 20) T / 2 >= 10, m_T <= e^{-5}. Cosine, clipped at beta_max = 20:
        # B(T) ~ 5.7 for T = 1 (m_T = 0.057) and ~ 7.1 for T = 2 (m_T = 0.029).
        assert m_T < (0.01 if "linear" in name else 0.06)
        expected_s = np.sqrt(1 - m_T**2) if name.startswith("vp") else 1 - m_T**2
        np.testing.assert_allclose(s_T, expected_s, rtol=1e-14)
    # prior_sample: shape and N(0, prior_std^2) moments.
    n, d = 20_000, 3
    x = np.asarray(sde.prior_sample(n, d, key=jr.key(0)), np.float64)
    assert x.shape == (n, d)
    mean, se = mean_se(x)
    assert_mc_close(mean, 0.0, se, what="prior mean")  # 5 s.e.
    var, se_var = mean_se(x**2)
    assert_mc_close(var, p**2, se_var, what="prior variance")  # 5 s.e.


@pytest.mark.parametrize("name", SDES)
def test_perturb_draws_the_transition_kernel(name):
    # x_t | x_0 ~ N(m_t x_0, s_t^2 I) exactly, for every row of a batch: (x_t - m x_0)/s_t is
    # standard normal, coordinates and rows independent.
    sde = SDES[name]()
    n, d = 20_000, 2
    x0 = 3.0 * jr.normal(jr.key(0), (n, d))
    t = jnp.asarray(0.3) * sde.T
    xt = sde.perturb(x0, t, key=jr.key(1))
    m, s = sde.marginal_mean_std(t)
    z = np.asarray((xt - m * x0) / s, np.float64)
    mean, se = mean_se(z)
    assert_mc_close(mean, 0.0, se, what="z mean")  # 5 s.e.
    second, se2 = mean_se(z[:, :, None] * z[:, None, :])
    assert_mc_close(second, np.eye(d), se2, what="z second moments")  # 5 s.e.
    one = sde.perturb(x0[0], t, key=jr.key(1))
    assert one.shape == (d,)


def test_parameters_are_traced_not_static():
    # A changed beta_max / sigma_max / T is the same compiled program (sliders never recompile).
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def moments(sde, t):
        m, s = sde.marginal_mean_std(t)
        return m, s, sde.diffusion(t), sde.drift(jnp.ones(2), t)

    outs = [moments(VPSDE(0.1, b, T=T), jnp.asarray(0.5))
            for b, T in ((20.0, 1.0), (10.0, 1.0), (5.0, 3.0))]
    assert len({float(o[0]) for o in outs}) == 3  # the values did reach the compiled code

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def ve_moments(sde, t):
        return sde.marginal_mean_std(t)

    for smax in (5.0, 10.0, 50.0):
        ve_moments(VESDE(0.01, smax), jnp.asarray(0.5))

    # The schedule is static: changing it must retrace (shows the trace counter is live).
    with pytest.raises(RuntimeError, match="traced"):
        moments(VPSDE(0.1, 20.0, schedule="cosine"), jnp.asarray(0.5))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: VPSDE(-0.1, 20.0), "beta_min must be > 0"),
        (lambda: VPSDE(0.0, 20.0), "beta_min must be > 0"),
        (lambda: SubVPSDE(-1.0, 20.0), "beta_min must be > 0"),
        (lambda: VPSDE(20.0, 20.0), "beta_min must be smaller than beta_max"),
        (lambda: VPSDE(30.0, 20.0, schedule="cosine"), "beta_min must be smaller than beta_max"),
        (lambda: SubVPSDE(5.0, 1.0), "beta_min must be smaller than beta_max"),
        (lambda: VESDE(0.0, 10.0), "sigma_min must be > 0"),
        (lambda: VESDE(-0.5, 10.0), "sigma_min must be > 0"),
        (lambda: VESDE(10.0, 10.0), "sigma_min must be smaller than sigma_max"),
        (lambda: VESDE(20.0, 10.0), "sigma_min must be smaller than sigma_max"),
        (lambda: VPSDE(0.1, 20.0, schedule="quadratic"), "schedule must be one of"),
        (lambda: SubVPSDE(0.1, 20.0, schedule="Linear"), "schedule must be one of"),
        (lambda: VPSDE(0.1, 20.0, T=0.0), "T must be > 0"),
        (lambda: VESDE(0.01, 10.0, T=-1.0), "T must be > 0"),
    ],
)
def test_bad_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("t", [-0.1, 1.5, 1.0 + 1e-3])
def test_perturb_rejects_time_outside_range(t):
    sde = VPSDE(0.1, 20.0)
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        sde.perturb(jnp.zeros(2), jnp.asarray(t), key=jr.key(0))


def test_perturb_rejects_time_outside_range_when_traced():
    sde = VPSDE(0.1, 20.0)
    f = eqx.filter_jit(lambda t: sde.perturb(jnp.zeros(2), t, key=jr.key(0)))
    assert f(jnp.asarray(1.0)).shape == (2,)  # t = T is allowed
    with pytest.raises(eqx.EquinoxRuntimeError, match="t must lie in"):
        f(jnp.asarray(1.5))

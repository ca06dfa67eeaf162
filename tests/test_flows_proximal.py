"""sg.flows' W1+W2-proximal flows: the exact translated-Gaussian solution and training."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import count_compiles

import sgmteach as sg
from sgmteach import flows


def _objective_1d(s, m, sigma, lam, L, T):
    """KL^{Gamma_L}(N(s, sigma^2) || N(m, sigma^2)) + lam/(2T) s^2, from its definition.

    The divergence by its Donsker-Varadhan form over linear critics c x with |c| <= L (for
    Gaussians E_P e^{c x} is closed form: the sup is taken on a fine grid of c), not from the
    Huber formula the library uses.
    """
    c = np.linspace(-L, L, 4001)
    dv = c * s - (c * m + 0.5 * c**2 * sigma**2)  # E_P[c x] - log E_Q e^{c x}
    return dv.max() + lam / (2 * T) * s**2


@pytest.mark.parametrize("m, sigma, lam, L, T", [
    (4.0, 1.0, 0.5, 1.0, 1.0), (4.0, 1.0, 0.1, 1.0, 1.0), (4.0, 1.0, 0.5, 2.0, 1.0),
    (-3.0, 0.5, 2.0, 0.7, 2.0), (2.0, 1.5, 0.0, 1.0, 1.0), (1.0, 0.8, 3.0, 10.0, 0.5),
])
def test_translated_gaussian_flow_minimises_the_objective(m, sigma, lam, L, T):
    s_grid = np.linspace(-abs(m) - 1, abs(m) + 1, 8001)  # spacing ~1e-3
    values = [_objective_1d(s, m, sigma, lam, L, T) for s in s_grid]
    brute = s_grid[int(np.argmin(values))]
    exact = float(flows.translated_gaussian_flow(jnp.array([m]), sigma, lam, L, T)[0])
    assert abs(exact - brute) <= 2e-3, (exact, brute)  # two grid spacings


def test_translated_gaussian_flow_known_values():
    # addendum A §3.2: |m| = 4, sigma = T = L = 1
    m = jnp.array([0.0, 4.0])
    for lam, L, s in ((0.5, 1.0, 2.0), (0.1, 1.0, 4 / 1.1), (0.5, 2.0, 8 / 3)):
        np.testing.assert_allclose(flows.translated_gaussian_flow(m, 1.0, lam, L), [0.0, s],
                                   rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(flows.translated_gaussian_flow(m, 1.0, 0.0, 1.0), m)  # lam = 0
    np.testing.assert_allclose(flows.translated_gaussian_flow(m, 1.0, 0.5, None), [0, 4 / 1.5],
                               rtol=1e-6)  # L = infinity: KL's proximal
    np.testing.assert_allclose(flows.translated_gaussian_flow(jnp.zeros(3), 1.0, 0.5, 1.0), 0)
    # traced values (a slider) give the same answer inside jit, without recompiling per value
    f = jax.jit(lambda lam, L: flows.translated_gaussian_flow(m, 1.0, lam, L))
    np.testing.assert_allclose(f(0.5, 1.0), [0.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(f(0.1, 1.0), [0.0, 4 / 1.1], rtol=1e-6)


def test_translated_gaussian_flow_bad_input():
    m = jnp.array([4.0, 0.0])
    with pytest.raises(ValueError, match="kinetic_weight"):
        flows.translated_gaussian_flow(m, 1.0, -0.1, 1.0)
    for L in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lipschitz"):
            flows.translated_gaussian_flow(m, 1.0, 0.5, L)
    with pytest.raises(ValueError, match="sigma"):
        flows.translated_gaussian_flow(m, 0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="T must be"):
        flows.translated_gaussian_flow(m, 1.0, 0.5, 1.0, T=0.0)
    with pytest.raises(ValueError, match="vector"):
        flows.translated_gaussian_flow(jnp.ones((2, 2)), 1.0, 0.5, 1.0)


def test_variational_objective_and_lipschitz_kl():
    # DV of a linear critic c x between N(a, 1) and N(m, 1): c (a - m) - c^2/2, exactly in
    # expectation; on 20 000 draws within Monte-Carlo error.
    x = 1.0 + jr.normal(jr.key(0), (20_000,))
    y = jr.normal(jr.key(1), (20_000,))
    c = 0.8
    dv = sg.variational_objective(c * x, c * y, "kl")
    assert abs(float(dv) - (c * 1.0 - c**2 / 2)) < 4 * c * np.sqrt(2 / 20_000) + 0.01
    w1 = sg.variational_objective(x, y, "w1")
    np.testing.assert_allclose(w1, jnp.mean(x) - jnp.mean(y), rtol=1e-6)
    al = sg.variational_objective(x, y, ("alpha", 2.0))
    np.testing.assert_allclose(al, jnp.mean(x) - jnp.mean(sg.f_alpha_conjugate(y, 2.0)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="divergence must be"):
        sg.variational_objective(x, y, "js")
    # the certified estimate between translated Gaussians against the Huber value (notes §2.6):
    # r = 3 > L sigma^2 = 1, so KL^L = L r - L^2 sigma^2 / 2 = 2.5; the estimate is a lower
    # bound of the plug-in value, within Monte-Carlo error of the population one.
    p = jnp.stack([3.0 + jr.normal(jr.key(2), (2000,)), jr.normal(jr.key(3), (2000,))], -1)
    q = jr.normal(jr.key(4), (2000, 2))
    est = sg.lipschitz_kl_divergence(p, q, key=jr.key(5), lip=1.0, steps=300)
    assert est.value <= est.raw + 1e-6 and est.lipschitz > 0
    assert 2.5 - 0.15 < est.value < 2.5 + 0.1, est


# ---------------------------------------------------------------------------------------------
# Training

M = jnp.array([4.0, 0.0])
SOURCE = sg.gaussian(jnp.zeros(2), jnp.eye(2))


@pytest.fixture(scope="module")
def translated_flow():
    data = sg.gaussian(M, jnp.eye(2)).sample(4000, key=jr.key(1))
    return data, flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.5, lipschitz=1.0,
                                       key=jr.key(1), steps=500, batch_size=128,
                                       progress=False)


@pytest.mark.slow
def test_flow_reaches_the_exact_displacement(translated_flow):
    data, flow = translated_flow
    x0 = SOURCE.sample(4000, key=jr.key(2))
    xT = flow.push(x0)
    disp = xT - x0
    mean, se = jnp.mean(disp, 0), jnp.std(disp, 0) / jnp.sqrt(disp.shape[0])
    # The exact flow at the bound the critic really has: its mean slope at the pushed points
    # (the gradient penalty is soft). Measured over two seeds at this budget: within 0.3-1.8%
    # of that answer; 5% of s* plus 4 Monte-Carlo standard errors is the test.
    slope = jnp.mean(jnp.linalg.norm(jax.vmap(jax.grad(flow.critic))(xT), axis=-1))
    exact = flows.translated_gaussian_flow(M, 1.0, 0.5, float(slope))
    assert float(slope) == pytest.approx(1.0, abs=0.1)
    assert bool(jnp.all(jnp.abs(mean - exact) <= 0.05 * 2.0 + 4 * se)), (mean, exact)
    # a translation: every particle moves by about the same vector, along straight lines
    assert float(jnp.max(jnp.std(disp, 0))) < 0.2
    paths = flow.paths(x0[:500], jnp.linspace(0.0, 1.0, 11), steps=20)
    assert float(jnp.median(flows.straightness(paths))) < 1.001


@pytest.mark.slow
def test_critic_respects_its_lipschitz_bound(translated_flow):
    data, flow = translated_flow
    xT = flow.push(SOURCE.sample(2000, key=jr.key(3)))
    u = jr.uniform(jr.key(4), (2000, 1))
    points = jnp.concatenate([data[:2000], xT, u * data[:2000] + (1 - u) * xT])
    norms = jnp.linalg.norm(jax.vmap(jax.grad(flow.critic))(points), axis=-1)
    # A penalty, not a projection: measured max 1.05-1.32 over two seeds, 99th percentile
    # under 1.05. The bound is tested with that slack, and a critic without it goes far above.
    assert float(jnp.quantile(norms, 0.99)) < 1.1, float(jnp.quantile(norms, 0.99))
    assert float(jnp.max(norms)) < 1.5


@pytest.mark.slow
def test_w2_proximal_straightens_and_lowers_the_kinetic_energy():
    target = sg.GaussianMixture.isotropic(jnp.array([0.5, 0.5]),
                                          jnp.array([[0.0, 3.0], [0.0, -3.0]]), 0.3)
    data = target.sample(2000, key=jr.key(1))
    x0 = SOURCE.sample(2000, key=jr.key(2))
    bend, ke = {}, {}
    for lam in (0.5, 0.0):
        flow = flows.train_w1w2_flow(SOURCE, data, kinetic_weight=lam, lipschitz=2.0,
                                     key=jr.key(0), steps=500, batch_size=128, progress=False)
        paths = flow.paths(x0, jnp.linspace(0.0, 1.0, 21), steps=20)
        bend[lam] = float(jnp.median(flows.straightness(paths))) - 1
        ke[lam] = float(jnp.mean(flow.kinetic_energy(x0)))
    # measured: excess path length 0.0021 vs 0.0044, kinetic energy 2.4 vs 7.1
    assert bend[0.5] < bend[0.0], bend
    assert ke[0.5] < 0.7 * ke[0.0], ke


def test_flow_push_paths_and_solvers():
    data = sg.gaussian(M, jnp.eye(2)).sample(256, key=jr.key(1))
    flow = flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.5, lipschitz=1.0,
                                 key=jr.key(0), steps=3, batch_size=32, progress=False)
    assert set(flow.history) == {"divergence", "kinetic"}
    assert flow.history["divergence"].shape == (3,)
    x0 = SOURCE.sample(64, key=jr.key(2))
    ts = jnp.linspace(0.0, 1.0, 6)
    paths = flow.paths(x0, ts)
    assert paths.shape == (6, 64, 2)
    np.testing.assert_allclose(paths[0], x0, atol=1e-6)
    np.testing.assert_allclose(paths[-1], flow.push(x0), atol=1e-5)
    # fine Euler steps and an adaptive solver agree (the ODE, not the scheme)
    fine = flow.push(x0, steps=400)
    np.testing.assert_allclose(flow.push(x0, solver=diffrax.Tsit5()), fine, atol=2e-3)
    assert flow.kinetic_energy(x0).shape == (64,)
    # source given as samples, and a Lipschitz-free critic, both run
    flows.train_w1w2_flow(x0, data, kinetic_weight=0.0, lipschitz=None, key=jr.key(0),
                          steps=2, batch_size=16, progress=False)


def test_no_recompile_when_the_proximal_weights_move():
    data = sg.gaussian(M, jnp.eye(2)).sample(256, key=jr.key(1))
    kw = dict(key=jr.key(0), steps=2, batch_size=16, progress=False)
    flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.5, lipschitz=1.0, **kw)
    with count_compiles("_run_chunk") as compiles:
        flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.1, lipschitz=3.0, **kw)
    assert len(compiles) == 0
    with count_compiles("_run_chunk") as compiles:  # positive control: a new batch size
        flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.1, lipschitz=3.0,
                              **{**kw, "batch_size": 8})
    assert len(compiles) == 1


def test_train_w1w2_flow_bad_input():
    data = sg.gaussian(M, jnp.eye(2)).sample(64, key=jr.key(1))
    kw = dict(key=jr.key(0), steps=2, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="kinetic_weight"):
        flows.train_w1w2_flow(SOURCE, data, kinetic_weight=-1.0, lipschitz=1.0, **kw)
    with pytest.raises(ValueError, match="lipschitz"):
        flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.5, lipschitz=0.0, **kw)
    with pytest.raises(ValueError, match="NaN"):
        flows.train_w1w2_flow(SOURCE, data.at[0, 0].set(jnp.inf), kinetic_weight=0.5,
                              lipschitz=1.0, **kw)
    with pytest.raises(ValueError, match="NaN"):
        flows.train_w1w2_flow(data.at[1, 1].set(jnp.nan), data, kinetic_weight=0.5,
                              lipschitz=1.0, **kw)
    with pytest.raises(ValueError, match="d=3 but the data has d=2"):
        flows.train_w1w2_flow(sg.gaussian(jnp.zeros(3), jnp.eye(3)), data, kinetic_weight=0.5,
                              lipschitz=1.0, **kw)
    with pytest.raises(ValueError, match="d=2"):
        flows.train_w1w2_flow(jnp.zeros((10, 3)), data, kinetic_weight=0.5, lipschitz=1.0,
                              **kw)
    with pytest.raises(ValueError, match="needs a Lipschitz bound"):
        flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.5, lipschitz=None,
                              divergence="w1", **kw)
    with pytest.raises(ValueError, match="steps must be"):
        flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.5, lipschitz=1.0,
                              **{**kw, "steps": 0})
    flow = flows.train_w1w2_flow(SOURCE, data, kinetic_weight=0.5, lipschitz=1.0, **kw)
    with pytest.raises(ValueError, match=r"\(n, d=2\)"):
        flow.push(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        flow.push(jnp.full((4, 2), jnp.nan))
    with pytest.raises(ValueError, match="ts must increase"):
        flow.paths(jnp.zeros((4, 2)), jnp.array([0.0, 2.0]))
    assert isinstance(flow, eqx.Module)

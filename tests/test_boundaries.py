"""Bad input gets a clear error at the boundary, eagerly and under `jit`.

One file for the checks the foundation review asked for, across modules: NaN in a mixture
built inside `jit`, `t = 0` where an object divides by $s_0 = 0$, integer data, the
one-signature sampling protocol and SDEs without closed-form marginals.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sgmteach as sg

SDE = sg.VPSDE(0.1, 20.0)


def _raises_under_jit(fn, *args, match):
    with pytest.raises(eqx.EquinoxRuntimeError, match=match):
        jax.block_until_ready(eqx.filter_jit(fn)(*args))


# -- NaN checks survive jit ------------------------------------------------------------------

def test_a_mixture_built_inside_jit_still_rejects_nan():
    def build(means):
        return sg.GaussianMixture(jnp.ones(1), means, jnp.eye(2)[None]).log_prob(jnp.zeros(2))

    assert np.isfinite(eqx.filter_jit(build)(jnp.zeros((1, 2))))  # control: clean input runs
    _raises_under_jit(build, jnp.full((1, 2), jnp.nan), match="means contains NaN")


def test_eager_nan_is_a_value_error_naming_the_argument():
    with pytest.raises(ValueError, match=r"covs contains NaN or inf \(first at index"):
        sg.GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.full((1, 2, 2), jnp.inf))


# -- t = 0 where an object divides by s_0 = 0 ------------------------------------------------

def _noise_mlp():
    return sg.ScoreMLP(2, 8, 1, key=jr.key(0), sde=SDE)


@pytest.mark.parametrize("make", [
    lambda: sg.EmpiricalScore(jnp.ones((4, 2)), SDE),
    _noise_mlp,
])
def test_singular_scores_refuse_t_zero(make):
    score = make()
    x = jnp.zeros(2)
    assert np.all(np.isfinite(score(x, jnp.asarray(0.5))))  # control: t > 0 is fine
    with pytest.raises(ValueError, match=r"t must lie in \(0, T\]"):
        score(x, jnp.asarray(0.0))
    _raises_under_jit(lambda s, t: s(x, t), score, jnp.asarray(0.0), match=r"t must lie in \(0")


def test_the_ode_sampler_with_a_noise_model_refuses_t0_zero():
    # Tsit5's last stage evaluates the model at t0: at 0 it used to return inf, then NaN.
    model = _noise_mlp()
    assert np.all(np.isfinite(sg.sample(model, SDE, 8, 2, key=jr.key(1), method="ode",
                                        t0=1e-3)))
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"t must lie in \(0"):
        jax.block_until_ready(sg.sample(model, SDE, 8, 2, key=jr.key(1), method="ode", t0=0.0))


@pytest.mark.parametrize("weighting", ["likelihood", "none"])
def test_losses_that_divide_by_s_t_refuse_t_zero(weighting):
    score = sg.ExactScore(sg.ring(), SDE)
    x0 = jnp.ones((4, 2))
    assert np.isfinite(sg.dsm_loss(score, SDE, x0, 0.5, key=jr.key(0), weighting=weighting))
    with pytest.raises(ValueError, match=r"t must lie in \(0, T\]"):
        sg.dsm_loss(score, SDE, x0, jnp.array([0.5, 0.0, 0.2, 0.1]), key=jr.key(0),
                    weighting=weighting)
    _raises_under_jit(lambda t: sg.dsm_loss(score, SDE, x0, t, key=jr.key(0),
                                            weighting=weighting),
                      jnp.asarray(0.0), match=r"t must lie in \(0")
    # sigma2 weighting does not divide by s_t: t = 0 is allowed there.
    assert np.isfinite(sg.dsm_loss(score, SDE, x0, 0.0, key=jr.key(0)))


def test_time_checks_agree_eagerly_and_under_jit_near_T():
    # One rule for both: T * (1 + 1e-6) passes, beyond fails (float32 round-off of T - t0).
    near, past = 1.0 + 5e-7, 1.0 + 1e-4
    SDE.perturb(jnp.zeros(2), near, key=jr.key(0))
    eqx.filter_jit(lambda t: SDE.perturb(jnp.zeros(2), t, key=jr.key(0)))(jnp.asarray(near))
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        SDE.perturb(jnp.zeros(2), past, key=jr.key(0))
    _raises_under_jit(lambda t: SDE.perturb(jnp.zeros(2), t, key=jr.key(0)),
                      jnp.asarray(past), match=r"t must lie in \[0, T\]")


# -- integer data ----------------------------------------------------------------------------

def test_integer_batches_are_promoted_in_the_loss():
    score = sg.ScoreMLP(2, 8, 1, key=jr.key(0))
    x_int = jnp.array([[1, 2], [3, -1], [0, 0], [2, 2]])
    t = jnp.array([0.1, 0.4, 0.7, 1.0])
    a = sg.dsm_loss(score, SDE, x_int, t, key=jr.key(1))
    b = sg.dsm_loss(score, SDE, x_int.astype(jnp.float32), t, key=jr.key(1))
    assert a == b and jnp.issubdtype(a.dtype, jnp.floating)


# -- one sampling protocol -------------------------------------------------------------------

def test_a_generator_is_a_target_for_the_floor():
    # Mixtures and generators share sample(n, *, key), so either can be mc_floor's target.
    gen = sg.symmetry.Generator(2, 2, width=8, depth=1, key=jr.key(0))
    metric = lambda x, y: sg.wasserstein1(x, y)  # noqa: E731
    for target in (gen, sg.ring()):
        floor = sg.mc_floor(metric, target, 32, key=jr.key(1), repeats=2)
        assert floor.mean > 0
    with pytest.raises(TypeError, match=r"sample\(n, \*, key\)"):
        sg.mc_floor(metric, object(), 32, key=jr.key(1))


# -- SDEs without closed-form marginals ------------------------------------------------------

class _Cubic(sg.AbstractSDE):
    """dX = -X^3 dt + dW: nonlinear drift, no closed-form marginal; prior N(0, 1/2)."""

    T: jax.Array = eqx.field(converter=jnp.asarray, default=1.0)

    def drift(self, x, t):
        return -(x**3)

    def diffusion(self, t):
        return jnp.asarray(1.0)

    def prior_sample(self, n, d, *, key):
        return jnp.sqrt(0.5) * jr.normal(key, (n, d))


def test_a_nonlinear_sde_runs_through_the_samplers():
    sde = _Cubic()
    # The score of the stationary law exp(-x^4/2): the reverse drift is f - g^2 s = x^3 and
    # the probability-flow drift f - g^2 s / 2 = 0 (a stationary law does not move).
    score = lambda x, t: -2.0 * x**3  # noqa: E731
    x = jnp.array([0.5, -2.0])
    np.testing.assert_allclose(sde.reverse_drift(score, x, 0.3), x**3, rtol=1e-6)
    np.testing.assert_allclose(sde.reverse_drift(score, x, 0.3, probability_flow=True),
                               jnp.zeros(2), atol=1e-6)
    for method in ("sde", "ode"):
        out = sg.sample(score, sde, 16, 2, key=jr.key(0), method=method, steps=20)
        assert out.shape == (16, 2) and np.all(np.isfinite(out))
    ts, xs = sg.trajectories(score, sde, 16, 2, key=jr.key(0), steps=20, n_saves=4)
    np.testing.assert_allclose(xs[-1], sg.sample(score, sde, 16, 2, key=jr.key(0), steps=20))


def test_objects_that_need_closed_form_marginals_say_so():
    sde = _Cubic()
    for call in (lambda: sg.ring().diffuse(sde, 0.5),
                 lambda: sg.ExactScore(sg.ring(), sde),
                 lambda: sg.EmpiricalScore(jnp.ones((3, 2)), sde),
                 lambda: sg.dsm_loss(lambda x, t: x, sde, jnp.ones((3, 2)), 0.5, key=jr.key(0))):
        with pytest.raises(TypeError, match="AbstractLinearSDE"):
            call()
    with pytest.raises(TypeError, match="AbstractSDE"):
        sg.sample(lambda x, t: x, "vp", 4, 2, key=jr.key(0))


def test_sample_checks_the_model_dimension():
    with pytest.raises(ValueError, match="dim=3 but the score model acts on d=2"):
        sg.sample(sg.ScoreMLP(2, 8, 1, key=jr.key(0)), SDE, 4, 3, key=jr.key(0))

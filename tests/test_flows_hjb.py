"""sg.flows' HJB residual and HJB-regularised score matching, against exact scores."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import count_compiles

import sgmteach as sg
import sgmteach.nonlinear as nl
from sgmteach import flows

EPS32 = float(jnp.finfo(jnp.float32).eps)


def _mixture(d):
    means = jnp.array([[0.0, 0.0, 0.5], [2.0, 1.0, -1.0], [-1.5, 2.0, 0.0]])[:, :d]
    a = jnp.array([[0.6, 0.2, 0.1], [0.0, 0.5, 0.2], [0.1, 0.0, 0.4]])[:d, :d]
    covs = jnp.stack([0.3 * jnp.eye(d), a @ a.T + 0.1 * jnp.eye(d), 0.2 * jnp.eye(d)])
    return sg.GaussianMixture(jnp.array([0.3, 0.5, 0.2]), means, covs)


SDES = {"vp": lambda: sg.VPSDE(0.1, 12.0), "subvp": lambda: sg.SubVPSDE(0.1, 12.0),
        "ve": lambda: sg.VESDE(0.01, 5.0)}


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", sorted(SDES))
@pytest.mark.parametrize("t", [0.05, 0.5, 0.95])
def test_exact_score_has_zero_residual_float32(d, name, t):
    sde, target = SDES[name](), _mixture(d)
    x = target.diffuse(sde, t).sample(256, key=jr.key(0))
    terms = flows.hjb_terms(sg.ExactScore(target, sde), sde, x, jnp.asarray(t))
    # Five terms of size `scale` cancel: float32 round-off is a few eps times the size of the
    # point's terms (its largest component: the components are computed together); each term
    # is itself a handful of rounded operations, and 64 eps covers them with room.
    size = jnp.max(terms.scale(), axis=-1, keepdims=True)
    rel = jnp.max(jnp.abs(terms.residual) / size)
    assert float(rel) <= 64 * EPS32, float(rel)
    assert float(jnp.max(terms.scale())) > 1e-3  # the terms themselves are not zero


def test_exact_score_has_zero_residual_float64(x64):
    sde, target = sg.VPSDE(0.99, 1.01, T=3.0), _mixture(2)  # the addendum's OU, beta ~ 1
    for t in (0.05, 0.5, 2.0):
        x = target.diffuse(sde, t).sample(200, key=jr.key(1))
        terms = flows.hjb_terms(sg.ExactScore(target, sde), sde, x, jnp.asarray(t))
        assert terms.residual.dtype == jnp.float64
        assert float(jnp.max(jnp.abs(terms.residual))) < 1e-11 * float(jnp.max(terms.scale()))


def test_residual_grows_linearly_in_a_perturbation(x64):
    # Addendum A §2.4: s + eps (cos x1, 0) gives a mean L1 residual proportional to eps. The
    # eps^2 part is -g^2 J_p^T p, at most eps^2 g^2 |sin x1 cos x1| <= eps^2/2 here (g ~ 1), so
    # at eps = 0.1 the ratio moves by at most 0.05 / (mean linear part ~ 0.6): under 10%.
    sde, target = sg.VPSDE(0.99, 1.01, T=3.0), _mixture(2)
    exact = sg.ExactScore(target, sde)
    for t in (0.05, 0.5, 2.0):
        x = target.diffuse(sde, t).sample(2000, key=jr.key(2))
        ratios = []
        for eps in (1e-3, 1e-2, 1e-1):
            def score(y, s, eps=eps):
                return exact(y, s) + eps * jnp.array([jnp.cos(y[0]), 0.0])

            r = flows.hjb_residual(score, sde, x, jnp.asarray(t))
            ratios.append(float(jnp.mean(jnp.sum(jnp.abs(r), axis=-1))) / eps)
        assert ratios[0] > 0.1
        np.testing.assert_allclose(ratios[1], ratios[0], rtol=0.01)
        np.testing.assert_allclose(ratios[2], ratios[0], rtol=0.1)


def test_nonlinear_drift_stationary_score_has_zero_residual(x64):
    # Under the Langevin SDE of sg.nonlinear, rho is invariant: grad log rho is the score at
    # every t. Its residual exercises grad(div f) and J_f^T s, zero for a linear SDE's drift.
    ref = _mixture(2)
    sde = nl.LangevinSDE(ref, 0.1, 10.0, strength=0.7, width=1.2)
    rho = sde.rho()
    x = rho.sample(300, key=jr.key(3))
    terms = flows.hjb_terms(nl.ReferenceScore(rho), sde, x, jnp.asarray(0.4))
    assert float(jnp.max(jnp.abs(terms.drift))) > 0.1  # the drift's divergence does vary
    assert float(jnp.max(jnp.abs(terms.residual))) < 1e-10 * float(jnp.max(terms.scale()))
    # ... and a score of the wrong law is caught
    wrong = flows.hjb_residual(sg.ExactScore(ref, sg.VPSDE(0.1, 10.0)), sde, x, jnp.asarray(0.4))
    assert float(jnp.mean(jnp.abs(wrong))) > 0.1


def test_hutchinson_is_unbiased_above_the_threshold():
    d = 12
    target = sg.ring(4, 2.0, 0.5, dim=d)
    sde = sg.VPSDE(0.1, 12.0)
    exact = sg.ExactScore(target, sde)

    def score(y, t):
        return exact(y, t) + 0.1 * jnp.sin(y)

    x = target.diffuse(sde, 0.3).sample(64, key=jr.key(4))
    t = jnp.asarray(0.3)
    ref = flows.hjb_residual(score, sde, x, t, max_exact_dim=d)
    draws = jnp.stack([flows.hjb_residual(score, sde, x, t, key=jr.key(k), probes=4)
                       for k in range(16)])
    mean = jnp.mean(draws, axis=0)
    se = jnp.std(draws, axis=0, ddof=1) / jnp.sqrt(draws.shape[0])
    # Unbiased: within 5 standard errors of the 16 estimates, plus float32 round-off where
    # the estimator has no variance (a Hessian with a diagonal block: Rademacher probes are
    # exact on it, and se = 0).
    excess = jnp.abs(mean - ref) - 5 * se - 1e-4 * (1 + jnp.abs(ref))
    assert float(jnp.max(excess)) <= 0, float(jnp.max(excess))
    z = (mean - ref) / se
    varied = se > 1e-3 * (1 + jnp.abs(ref))
    # Where the probes vary, 16-sample t-scores: mean square ~ 15/13; 2.0 is far above that.
    assert int(jnp.sum(varied)) > 100 and float(jnp.mean(z[varied] ** 2)) < 2.0
    assert float(jnp.mean(se)) > 0  # the probes do vary
    with pytest.raises(ValueError, match="key="):
        flows.hjb_residual(score, sde, x, t)


def test_residual_bad_input():
    sde, target = sg.VPSDE(0.1, 12.0), _mixture(2)
    exact = sg.ExactScore(target, sde)
    x = target.sample(8, key=jr.key(0))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        flows.hjb_residual(exact, sde, x[0], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        flows.hjb_residual(exact, sde, x.at[3, 1].set(jnp.nan), 0.5)
    for t in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
            flows.hjb_residual(exact, sde, x, t)
    with pytest.raises(ValueError, match="scalar"):
        flows.hjb_residual(exact, sde, x, jnp.array([0.5, 0.6]))
    with pytest.raises(TypeError, match="AbstractSDE"):
        flows.hjb_residual(exact, "vp", x, 0.5)
    model = sg.ScoreMLP(3, 16, 1, key=jr.key(0))
    with pytest.raises(ValueError, match="d=2 but the score model has d=3"):
        flows.hjb_residual(model, sde, x, 0.5)
    # under jit, a time out of range is a clear runtime error, not a silent number
    bad = eqx.filter_jit(lambda t: flows.hjb_residual(exact, sde, x, t))
    with pytest.raises(eqx.EquinoxRuntimeError, match="t must lie in"):
        bad(jnp.asarray(2.0))


def test_residual_of_a_network_moves_with_t_without_recompiling():
    sde = sg.VPSDE(0.1, 12.0)
    model = sg.ScoreMLP(2, 16, 2, key=jr.key(0), sde=sde)
    x = jr.normal(jr.key(1), (32, 2))
    flows.hjb_residual(model, sde, x, jnp.asarray(0.3))
    with count_compiles("_terms_batch") as compiles:
        r = flows.hjb_residual(model, sde, x, jnp.asarray(0.7))
    assert len(compiles) == 0 and r.shape == (32, 2)
    with count_compiles("_terms_batch") as compiles:  # positive control: a new shape compiles
        flows.hjb_residual(model, sde, x[:16], jnp.asarray(0.7))
    assert len(compiles) == 1


# ---------------------------------------------------------------------------------------------
# HJB-regularised score matching


def test_hjb_loss_is_dsm_plus_the_weighted_residual():
    sde, target = sg.VPSDE(0.1, 12.0), _mixture(2)
    model = sg.ScoreMLP(2, 16, 2, key=jr.key(0), sde=sde)
    x0 = target.sample(64, key=jr.key(1))
    t = jnp.linspace(0.05, 0.95, 64)
    key = jr.key(2)
    dsm = sg.dsm_loss(model, sde, x0, t, key=key)
    np.testing.assert_allclose(flows.HJBLoss(0.0)(model, sde, x0, t, key=key), dsm, rtol=1e-6)
    # the penalty, recomputed point by point with hjb_residual at the same noised points
    m, s = jax.vmap(sde.marginal_mean_std)(t)
    xt = m[:, None] * x0 + s[:, None] * jr.normal(key, x0.shape)
    per = jnp.stack([flows.hjb_residual(model, sde, xt[i:i + 1], t[i])[0] for i in range(64)])
    scaled = per * (s**3 / jax.vmap(sde.diffusion)(t) ** 2)[:, None]
    for norm, pen in (("l1", jnp.mean(jnp.sum(jnp.abs(scaled), -1))),
                      ("l2", jnp.mean(jnp.sum(scaled**2, -1)))):
        loss = flows.HJBLoss(0.3, norm=norm)(model, sde, x0, t, key=key)
        np.testing.assert_allclose(loss, dsm + 0.3 * pen, rtol=1e-4)
    raw = flows.HJBLoss(1.0, scaling="none").residual_penalty(model, sde, x0, t, key=key)
    np.testing.assert_allclose(raw, jnp.mean(jnp.sum(jnp.abs(per), -1)), rtol=1e-4)


def test_hjb_loss_bad_input():
    with pytest.raises(ValueError, match="hjb_weight must be >= 0"):
        flows.HJBLoss(-0.1)
    with pytest.raises(ValueError, match="norm must be one of"):
        flows.HJBLoss(0.1, norm="l3")
    with pytest.raises(ValueError, match="scaling must be one of"):
        flows.HJBLoss(0.1, scaling="sigma")
    with pytest.raises(ValueError, match="scalar"):
        flows.HJBLoss(jnp.ones(2))
    sde = sg.VPSDE(0.1, 12.0)
    model = sg.ScoreMLP(2, 16, 1, key=jr.key(0), sde=sde)
    with pytest.raises(ValueError, match="weighting must be one of"):
        flows.train_hjb(model, sde, jnp.zeros((8, 2)), hjb_weight=0.1, key=jr.key(0),
                        weighting="bad", steps=2)
    with pytest.raises(ValueError, match="NaN"):
        flows.train_hjb(model, sde, jnp.full((8, 2), jnp.nan), hjb_weight=0.1, key=jr.key(0),
                        steps=2)


@pytest.mark.slow
def test_the_weight_flattens_the_residual_in_one_compiled_program():
    target, sde = sg.ring(8, 2.0, 0.2), sg.VPSDE(0.1, 12.0)
    data = target.sample(256, key=jr.key(1))
    x = target.diffuse(sde, 0.2).sample(500, key=jr.key(7))
    s, g2 = sde.marginal_mean_std(0.2)[1], sde.diffusion(0.2) ** 2
    residuals, compiles = [], []
    for w in (0.0, 1.0):
        model = sg.ScoreMLP(2, 32, 2, key=jr.key(0), sde=sde)
        with count_compiles("_run_chunk") as found:
            model, losses = flows.train_hjb(model, sde, data, hjb_weight=w, key=jr.key(2),
                                            steps=600, batch_size=64, progress=False)
        compiles.append(len(found))
        assert np.all(np.isfinite(losses))
        r = flows.hjb_residual(model, sde, x, jnp.asarray(0.2))
        residuals.append(float(jnp.mean(jnp.sum(jnp.abs(r), -1)) * s**3 / g2))
    assert compiles[1] == 0, compiles  # the weight is a value: the second run reuses the chunk
    # Measured (1500 steps, width 64): 0.67 -> 0.036. Here at 600 steps, a factor 3 at least.
    assert residuals[1] < residuals[0] / 3, residuals

"""EmpiricalScore: the exact score of an empirical measure, with optional atom weights."""

import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

import sgmteach as sg


def test_zero_weights_remove_atoms_exactly():
    sde = sg.VPSDE(0.1, 20.0)
    data = sg.ring().sample(64, key=jr.key(0))
    x = jr.normal(jr.key(1), (32, 2))
    mask = (jnp.arange(64) < 10) / 10.0
    full = sg.EmpiricalScore(data[:10], sde)(x, 0.1)
    masked = sg.EmpiricalScore(data, sde, weights=mask)(x, 0.1)
    # Same logits up to -inf entries, so the softmax is identical to float32 round-off.
    assert jnp.allclose(full, masked, atol=1e-5, rtol=1e-5)


def test_weighted_score_is_gradient_of_weighted_log_density():
    sde = sg.VPSDE(0.1, 20.0)
    data = jr.normal(jr.key(2), (5, 2))
    w = jnp.array([0.1, 0.2, 0.3, 0.15, 0.25])
    t = 0.3
    m, s = sde.marginal_mean_std(t)
    mix = sg.GaussianMixture(w, m * data, jnp.broadcast_to(s**2 * jnp.eye(2), (5, 2, 2)))
    x = jr.normal(jr.key(3), (16, 2))
    got = sg.EmpiricalScore(data, sde, weights=w)(x, t)
    want = jax.vmap(jax.grad(mix.log_prob))(x)
    assert jnp.allclose(got, want, atol=1e-4, rtol=1e-4)  # float32, score of order 1/s^2 ~ 2


def test_bad_weights_rejected():
    sde = sg.VPSDE(0.1, 20.0)
    data = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="weights"):
        sg.EmpiricalScore(data, sde, weights=jnp.ones(4) / 4)
    with pytest.raises(ValueError, match="weights"):
        sg.EmpiricalScore(data, sde, weights=jnp.array([0.5, 0.7, -0.2]))

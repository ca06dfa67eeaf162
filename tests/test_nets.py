"""Score networks: the time embedding, the noise parameterisation and parameter counts."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from sgmteach import VPSDE, ScoreMLP, TimeEmbedding, count_params


def test_time_embedding_by_hand():
    emb = TimeEmbedding(size=8, max_freq=4.0, T=2.0)
    # Frequencies 0.5 .. 4 log-spaced: 0.5, 1, 2, 4.
    np.testing.assert_allclose(emb.freqs, [0.5, 1.0, 2.0, 4.0], rtol=1e-6)
    e0 = emb(jnp.asarray(0.0))
    assert e0.shape == (8,)
    np.testing.assert_array_equal(e0, [0, 0, 0, 0, 1, 1, 1, 1])  # sin 0, cos 0
    # t = T/2: angle 2 pi f t / T = pi f -> sin(pi/2) = 1, sin(pi) = 0, ...; cos(pi/2) = 0, ...
    # float32: angles up to 4 pi carry ~4 pi * 2^-23 * 3 ~ 5e-6 rounding.
    np.testing.assert_allclose(emb(jnp.asarray(1.0)), [1, 0, 0, 0, 0, -1, 1, 1], atol=2e-5)


def test_score_mlp_shapes_and_batching():
    model = ScoreMLP(3, 16, 2, key=jr.key(0), embed_size=8)
    x, t = jr.normal(jr.key(1), (5, 3)), jnp.linspace(0.1, 1.0, 5)
    out = eqx.filter_jit(jax.vmap(model))(x, t)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out[2], model(x[2], t[2]), rtol=1e-5, atol=1e-6)  # jit vs eager


def test_noise_parameterisation_divides_by_marginal_std():
    # Same key -> same MLP weights; with an SDE the output is -eps_theta(x, t) / s_t.
    sde = VPSDE(0.1, 20.0)
    plain = ScoreMLP(2, 16, 2, key=jr.key(0))
    noise = ScoreMLP(2, 16, 2, key=jr.key(0), sde=sde)
    x = jr.normal(jr.key(1), (2,))
    for t in (0.01, 0.5, 1.0):
        t = jnp.asarray(t)
        s = sde.marginal_mean_std(t)[1]
        np.testing.assert_allclose(noise(x, t), -plain(x, t) / s, rtol=1e-5)  # float32


def _hand_count(d, width, depth, embed):
    # Linear layers (in+1) x out: (d + embed) -> width, (depth - 1) x width -> width, width -> d.
    return (d + embed + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * d


def test_count_params_counts_the_mlp():
    model = ScoreMLP(2, 16, 2, key=jr.key(0), embed_size=8)
    mlp_only = count_params(model.mlp)
    assert mlp_only == _hand_count(2, 16, 2, 8) == 482


def test_count_params_counts_only_trainable_weights():
    sde = VPSDE(0.1, 20.0)
    assert count_params(ScoreMLP(2, 16, 2, key=jr.key(0), embed_size=8)) == 482
    assert count_params(ScoreMLP(2, 16, 2, key=jr.key(0), embed_size=8, sde=sde)) == 482


def test_model_is_a_pytree_of_arrays():
    model = ScoreMLP(2, 16, 2, key=jr.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    again = eqx.combine(params, static)
    x, t = jnp.ones(2), jnp.asarray(0.3)
    np.testing.assert_array_equal(again(x, t), model(x, t))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: TimeEmbedding(size=3), "size must be an even integer"),
        (lambda: TimeEmbedding(size=0), "size must be an even integer"),
        (lambda: ScoreMLP(0, key=jr.key(0)), "dim must be a positive integer"),
        (lambda: ScoreMLP(2, width=0, key=jr.key(0)), "width must be a positive integer"),
        (lambda: ScoreMLP(2, depth=0, key=jr.key(0)), "depth must be a positive integer"),
    ],
)
def test_bad_network_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()

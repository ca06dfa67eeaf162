"""Training: the loss falls to the exact DSM floor; EMA, augmentation and chunking are exact."""

from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from helpers import C_SE, assert_mc_close, count_compiles, mean_se

from sgmteach import VPSDE, ScoreMLP, dsm_floor, dsm_loss, ring, train

STEPS, BATCH, T_MIN = 2000, 512, 1e-3


@pytest.fixture(scope="module")
def run():
    """One 2000-step run on a 4-Gaussian ring, shared by the tests below (~10 s)."""
    target, sde = ring(k=4, radius=2.0, std=0.5), VPSDE(0.1, 20.0)
    data = target.sample(20_000, key=jr.key(0))
    model = ScoreMLP(2, 64, 2, key=jr.key(1), sde=sde)
    ema, losses = train(model, sde, data, key=jr.key(2), steps=STEPS, batch_size=BATCH,
                        t_min=T_MIN, time_sampling="uniform", progress=False)
    # The floor of the same loss: times uniform in [t_min, T] (a uniform grid, one per draw);
    # its reported s.e. treats the times as i.i.d. draws, which overstates it (conservative).
    n = 200_000
    t = T_MIN + (1.0 - T_MIN) * (jnp.arange(n) + 0.5) / n
    floor_fn = eqx.filter_jit(lambda target, sde, t, key: dsm_floor(target, sde, t, key=key, n=n))
    floor, se_floor = (float(v) for v in floor_fn(target, sde, t, jr.key(3)))
    return SimpleNamespace(target=target, sde=sde, model=model, ema=ema, losses=losses,
                           floor=floor, se_floor=se_floor)


def test_loss_history(run):
    assert isinstance(run.losses, np.ndarray)
    assert run.losses.shape == (STEPS,)
    assert np.isfinite(run.losses).all()


def test_training_lowers_the_loss(run):
    # Untrained, the loss is E||z - eps_theta||^2 >= d = 2 (z is independent of the initial net);
    # the per-step losses are independent batches, so each window mean has s.e. std / sqrt(len).
    early, se_early = mean_se(run.losses[:10])
    late, se_late = mean_se(run.losses[-500:])
    assert early > 2 - C_SE * se_early
    assert early - late > C_SE * np.hypot(se_early, se_late)


def test_late_loss_sits_at_the_floor(run):
    # After 2000 steps the DSM loss is the floor E C(t) plus the model's ESM error; the latter
    # must be within the Monte-Carlo error: 500 late steps x 512 draws (s.e. ~0.002) and the
    # floor's 200,000 draws (s.e. ~0.004); 5 s.e. of the difference.
    late, se_late = mean_se(run.losses[-500:])
    assert_mc_close(late, run.floor, np.hypot(se_late, run.se_floor), what="late loss vs floor")
    assert late > run.floor - C_SE * np.hypot(se_late, run.se_floor)  # DSM >= floor


@eqx.filter_jit
def _fresh_losses(model, target, sde, key, batches: int, m: int):
    def one(key):
        kx, kt, kz = jr.split(key, 3)
        t = jr.uniform(kt, (m,), minval=T_MIN, maxval=1.0)
        return dsm_loss(model, sde, target.sample(m, key=kx), t, key=kz)

    return jax.vmap(one)(jr.split(key, batches))


def test_ema_returns_a_trained_model(run):
    assert isinstance(run.ema, ScoreMLP)
    assert jax.tree_util.tree_structure(run.ema) == jax.tree_util.tree_structure(run.model)
    # On fresh draws the returned (EMA) model's loss is at the floor too; 32 batches of 512,
    # s.e. from their spread (t with 31 d.o.f.: P(|t| > 5) = 2e-5). The untrained model's loss
    # is ~2 (test_training_lowers_the_loss), far outside this band.
    loss, se = mean_se(_fresh_losses(run.ema, run.target, run.sde, jr.key(4), 32, 512))
    assert_mc_close(loss, run.floor, np.hypot(se, run.se_floor), what="EMA model loss vs floor")


def test_training_leaves_embedding_and_sde_fixed(run):
    # The time embedding and the SDE inside ScoreMLP are fixed, not parameters.
    for name, get in [
        ("embed.freqs", lambda m: m.embed.freqs),
        ("embed.T", lambda m: m.embed.T),
        ("sde.beta_min", lambda m: m.sde.beta_min),
        ("sde.beta_max", lambda m: m.sde.beta_max),
        ("sde.T", lambda m: m.sde.T),
    ]:
        np.testing.assert_array_equal(get(run.ema), get(run.model), err_msg=name)
    # ... while the MLP weights did move.
    assert not np.array_equal(run.ema.mlp.layers[0].weight, run.model.mlp.layers[0].weight)


class _Param(eqx.Module):
    w: jax.Array
    dim: int = eqx.field(static=True, default=2)


def _mean_of_data(model, sde, x0, t, *, key, weighting):
    """A loss that reports the batch mean of x0 and has zero gradient."""
    return jnp.mean(x0) + 0.0 * jnp.sum(model.w)


def _plus_one():
    """An optimiser whose update is +1 on every parameter, whatever the gradient."""
    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda grads, state, params=None: (jax.tree_util.tree_map(jnp.ones_like, grads), state),
    )


@pytest.mark.parametrize("decay", [0.9, 0.0])
def test_ema_recursion_is_exact(decay):
    # Parameters after k steps: w_k = w0 + k. Optax's debiased EMA: m_k = decay m_{k-1} +
    # (1 - decay) w_k from m_0 = 0, returned as m_k / (1 - decay^k): the initial weights w0
    # enter only through the iterates. 37 steps in chunks of 10: the last chunk's 3 padding
    # steps must not move anything.
    w0, steps = jnp.array([0.5, -1.0]), 37
    model, _ = train(_Param(w0), VPSDE(0.1, 20.0), jnp.ones((8, 2)), key=jr.key(0), steps=steps,
                     batch_size=4, optimizer=_plus_one(), ema_decay=decay,
                     loss_fn=_mean_of_data, chunk_size=10, progress=False)
    m = np.zeros(2)
    for k in range(1, steps + 1):
        m = decay * m + (1 - decay) * (np.asarray(w0, np.float64) + k)
    # float32 recursion: ~37 roundings of 6e-8 relative each.
    np.testing.assert_allclose(model.w, m / (1 - decay**steps), rtol=1e-5)


def _jump_to(c):
    """An optimiser that moves every parameter to `c` at its first step and keeps it there."""
    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda grads, state, params: (jax.tree_util.tree_map(lambda p: c - p, params), state),
    )


def test_a_short_run_returns_no_part_of_the_initial_weights():
    # Every iterate equals c, so the average of the iterates is c. An EMA started at the
    # initial weights without bias correction would return 0.99^100 = 37% of w0 = 10 here:
    # 0.37 * 10 + 0.63 * 1 = 4.3, far outside the float32 tolerance.
    w0, c = jnp.full(2, 10.0), 1.0
    model, _ = train(_Param(w0), VPSDE(0.1, 20.0), jnp.ones((8, 2)), key=jr.key(0), steps=100,
                     batch_size=4, optimizer=_jump_to(c), ema_decay=0.99,
                     loss_fn=_mean_of_data, progress=False)
    np.testing.assert_allclose(model.w, c, rtol=1e-5)


def test_integer_data_is_promoted_and_trains_like_float_data():
    # Integer data once cast the sampled times to integers (all 0): nothing was learned.
    sde = VPSDE(0.1, 20.0)
    data = jr.randint(jr.key(3), (64, 2), -3, 4)
    common = dict(key=jr.key(0), steps=20, batch_size=16, progress=False)
    m_int, l_int = train(_tiny(), sde, data, **common)
    m_float, l_float = train(_tiny(), sde, data.astype(jnp.float32), **common)
    np.testing.assert_array_equal(l_int, l_float)
    np.testing.assert_array_equal(m_int.mlp.layers[0].weight, m_float.mlp.layers[0].weight)
    assert not np.array_equal(m_int.mlp.layers[0].weight, _tiny().mlp.layers[0].weight)


def test_augment_is_applied_each_step_with_a_fresh_key():
    sde, data = VPSDE(0.1, 20.0), jnp.ones((64, 2))
    common = dict(key=jr.key(0), steps=30, batch_size=16, optimizer=optax.sgd(0.0),
                  loss_fn=_mean_of_data, chunk_size=7, progress=False)
    _, plain = train(_Param(jnp.zeros(2)), sde, data, **common)
    np.testing.assert_array_equal(plain, 1.0)  # the data mean, exactly
    _, shifted = train(_Param(jnp.zeros(2)), sde, data, augment=lambda x, *, key: x + 10.0,
                       **common)
    np.testing.assert_array_equal(shifted, 11.0)
    _, noisy = train(_Param(jnp.zeros(2)), sde, data,
                     augment=lambda x, *, key: x + jr.normal(key, x.shape), **common)
    assert len(set(noisy.tolist())) == 30  # a fresh key at every step
    # Each loss is 1 + the mean of 32 standard normals; 30 steps: s.e. 1 / sqrt(960).
    assert_mc_close(noisy.mean(), 1.0, 1 / np.sqrt(30 * 32), what="augmented mean")  # 5 s.e.


def _tiny():
    return ScoreMLP(2, 4, 1, key=jr.key(0), embed_size=2)


@pytest.mark.parametrize(
    "data, kwargs, match",
    [
        (jnp.ones((8, 2)).at[3, 1].set(jnp.nan), {}, "data contains NaN"),
        (jnp.ones((8, 2)).at[0, 0].set(jnp.inf), {}, "data contains NaN or inf"),
        (jnp.ones((8, 3)), {}, "data has dimension d=3 but the model expects d=2"),
        (jnp.ones(8), {}, "data must have shape"),
        (jnp.ones((8, 2)), {"weighting": "snr"}, "weighting must be one of"),
        (jnp.ones((8, 2)), {"time_sampling": "sobol"}, "time_sampling must be one of"),
        (jnp.ones((8, 2)), {"t_min": 0.0}, "t_min must lie in"),
        (jnp.ones((8, 2)), {"t_min": 1.5}, "t_min must lie in"),
        (jnp.ones((8, 2)), {"steps": 0}, "steps must be a positive integer"),
        (jnp.ones((8, 2)), {"batch_size": 0}, "batch_size must be a positive integer"),
        (jnp.ones((8, 2)), {"ema_decay": 1.0}, "ema_decay must lie in"),
        (jnp.ones((0, 2)), {}, "data must have shape"),
    ],
)
def test_bad_training_input(data, kwargs, match):
    kwargs = {"steps": 2, "batch_size": 4, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(_tiny(), VPSDE(0.1, 20.0), data, key=jr.key(0), **kwargs)


def test_a_second_run_with_the_same_configuration_compiles_nothing():
    # The optimiser and the EMA are cached Optax objects, so the jitted chunk is found again;
    # tutorials that train several models of one shape pay one compilation.
    sde, data = VPSDE(0.1, 20.0), jnp.ones((64, 2))
    common = dict(steps=30, batch_size=16, chunk_size=10, progress=False)
    train(_tiny(), sde, data, key=jr.key(0), **common)
    with count_compiles("_run_chunk") as compiles:
        train(ScoreMLP(2, 4, 1, key=jr.key(5), embed_size=2), sde, data + 1.0, key=jr.key(1),
              **common)
    assert compiles == []
    with count_compiles("_run_chunk") as compiles:  # positive control: a new batch size
        train(_tiny(), sde, data, key=jr.key(2), **{**common, "batch_size": 8})
    assert len(compiles) == 1

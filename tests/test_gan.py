"""The small Wasserstein GAN and its group-invariant version."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from sgmteach import gaussian, mc_floor, w1_exact, wasserstein1
from sgmteach.symmetry import (
    CyclicGroup,
    Generator,
    InvariantFunction,
    InvariantGenerator,
    SignFlips,
    train_gan,
)

EPS32 = float(jnp.finfo(jnp.float32).eps)
MU = np.array([2.0, 2.0])
TARGET = gaussian(MU, 0.25 * np.eye(2))  # std 0.5, far from where a fresh generator puts mass
SMALL = dict(steps=200, batch_size=128, width=32, progress=False)


@pytest.fixture(scope="module")
def plain_run():
    gen = Generator(2, 2, width=32, key=jr.key(0))
    data = TARGET.sample(256, key=jr.key(1))
    return gen, train_gan(gen, data, key=jr.key(2), **SMALL)


@pytest.fixture(scope="module")
def invariant_run():
    group = CyclicGroup(4)
    data = jnp.concatenate([group.act(TARGET.sample(64, key=jr.fold_in(jr.key(3), i)), i)
                            for i in range(4)])  # a C_4-invariant 4-mode target
    gen = Generator(2, 2, width=32, key=jr.key(4))
    return group, train_gan(gen, data, key=jr.key(5), group=group, **SMALL)


def test_shapes():
    gen = Generator(3, 2, width=16, depth=1, key=jr.key(0))
    assert gen(jnp.zeros(3)).shape == (2,)
    assert gen.sample(10, key=jr.key(1)).shape == (10, 2)
    inv = InvariantGenerator(gen, CyclicGroup(4))
    assert inv.dim == 2 and inv.sample(7, key=jr.key(2)).shape == (7, 2)


def test_training_outputs(plain_run, invariant_run):
    _, res = plain_run
    assert res.w1.shape == (SMALL["steps"],) and np.isfinite(res.w1).all()
    assert isinstance(res.generator, Generator)
    group, inv = invariant_run
    assert isinstance(inv.generator, InvariantGenerator)
    assert isinstance(inv.critic, InvariantFunction)
    assert inv.critic(jnp.ones(2)).shape == ()


def test_invariant_generator_is_a_random_orbit_copy():
    """A_sigma g(z): every sample is an orbit copy of the plain sample with the same noise."""
    group, gen = CyclicGroup(4), Generator(2, 2, width=16, key=jr.key(0))
    key, n = jr.key(1), 400
    x = InvariantGenerator(gen, group).sample(n, key=key)
    plain = gen.sample(n, key=jr.split(key)[0])
    dist = jnp.linalg.norm(group.orbit(plain) - x[None], axis=-1)  # (g, n)
    # Float32 round-off of one 2x2 rotation: a few eps times |x|.
    assert float(dist.min(axis=0).max()) < 10 * EPS32 * (1 + float(jnp.abs(plain).max()))
    counts = np.bincount(np.asarray(dist.argmin(axis=0)), minlength=4)
    assert (counts > 0).all()  # P(an element never drawn) = 4 (3/4)^400 < 1e-49


@pytest.mark.parametrize("group", [SignFlips(2), CyclicGroup(4)], ids=["signflips", "c4"])
def test_invariant_critic_is_exactly_invariant(invariant_run, group):
    _, res = invariant_run
    critic = InvariantFunction(res.critic.fn, group)  # the trained MLP, averaged over `group`
    x = 3.0 * jr.normal(jr.key(6), (200, 2))
    fx = jax.vmap(critic)(x)
    # Permuting the orbit changes only the summation order (SignFlips: exactly a permutation);
    # for rotations A_i A_g x differs from A_{ig} x by ~eps |x|, moved by the critic's slope.
    grads = jax.vmap(jax.grad(critic))(x)
    slope = float(jnp.linalg.norm(grads, axis=-1).max()) + 1.0
    tol = 20 * EPS32 * (float(jnp.abs(fx).max()) + slope * float(jnp.abs(x).max()))
    for i in range(group.order):
        fgx = jax.vmap(critic)(group.act(x, i))
        assert float(jnp.abs(fgx - fx).max()) < tol, f"element {i}"


def test_training_moves_samples_to_the_target(plain_run):
    gen, res = plain_run
    n = 256
    before = w1_exact(gen.sample(n, key=jr.key(7)), TARGET.sample(n, key=jr.key(8)))
    after = w1_exact(res.generator.sample(n, key=jr.key(7)), TARGET.sample(n, key=jr.key(8)))
    # Before: W1 >= |difference of means| ~ |MU| = 2.8. The floor is W1 between two 256-samples
    # of the target itself (~0.13, std ~0.01 over repeats): no generator gets below it. A short
    # run (200 steps) must close at least 70% of the gap to the floor; the gap is ~2.7 and the
    # Monte-Carlo noise of each W1 is ~0.01, so the drop asked for (~1.9) is > 100 noise s.d.
    floor = mc_floor(wasserstein1, TARGET, n, key=jr.key(9), repeats=5)
    assert before > 2.0
    assert before - after > 0.7 * (before - floor.mean), (before, after, floor)
    assert np.mean(res.w1[-50:]) < 0.5 * np.mean(res.w1[:50])  # the critic's estimate drops


def test_bad_inputs_rejected():
    gen, data = Generator(2, 2, width=8, key=jr.key(0)), jnp.zeros((16, 2))
    with pytest.raises(ValueError, match="noise_dim"):
        Generator(0, 2, key=jr.key(0))
    with pytest.raises(ValueError, match="group acts on d=3"):
        InvariantGenerator(gen, CyclicGroup(4, d=3))
    with pytest.raises(ValueError, match="data must have shape"):
        train_gan(gen, jnp.zeros(16), key=jr.key(0))
    with pytest.raises(ValueError, match="data contains NaN"):
        train_gan(gen, data.at[3, 1].set(jnp.nan), key=jr.key(0))
    with pytest.raises(ValueError, match="generator outputs d=2"):
        train_gan(gen, jnp.zeros((16, 3)), key=jr.key(0))
    with pytest.raises(ValueError, match="group must be"):
        train_gan(gen, data, key=jr.key(0), group=SignFlips(3))
    for name in ("steps", "critic_steps", "batch_size", "width"):
        with pytest.raises(ValueError, match=name):
            train_gan(gen, data, key=jr.key(0), **{name: 0})
    for name in ("lr", "critic_lr", "penalty"):
        with pytest.raises(ValueError, match=name):
            train_gan(gen, data, key=jr.key(0), **{name: 0.0})

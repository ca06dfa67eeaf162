r"""A small Wasserstein GAN and its group-invariant version.

A generator $g_\theta:\mathbb{R}^k\to\mathbb{R}^d$ pushes Gaussian noise $\nu$ forward; a critic
$f$ with Lipschitz constant $\le 1$ (a one-sided gradient penalty, as the critics of
`sgmteach.divergences`) estimates the $W_1$ distance to the data $\mu_n$ by its dual,

$$\min_\theta\ \sup_{\mathrm{Lip}\,f\le1}\ \mathbb{E}_{\mu_n}f - \mathbb{E}_{(g_\theta)_\#\nu}f.$$

The group-invariant GAN symmetrises *both* players, as the invariant-GAN paper does: the critic is
$S_G f = \frac1{|G|}\sum_g f\circ A_g$ and the generated law is $S_G[(g_\theta)_\#\nu]$, sampled
as $A_\sigma g_\theta(z)$ with $\sigma$ uniform per sample. With an invariant critic alone, a
generator that covers one mode per orbit already has zero loss (the critic only sees
$S_G$ of what it is shown), so it may collapse; the random $\sigma$ removes that. Training uses
the raw data, no augmentation.

References: Chen, Katsoulakis, Rey-Bellet, Zhu, "Statistical Guarantees of Group-Invariant GANs"
(arXiv:2305.13517); Arjovsky, Chintala, Bottou, "Wasserstein GAN" (ICML 2017); Gulrajani et al.,
"Improved Training of Wasserstein GANs" (NeurIPS 2017).
"""

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, float_array, positive_int
from .._loop import run_chunked
from .._types import Key, Number
from ..divergences import gradient_penalty
from .groups import AbstractGroup
from .symmetrize import RandomAction, symmetrize


class AbstractGenerator(eqx.Module):
    """A sampler of a generated law: `sample(n, key=key)` returns `(n, d)` points."""

    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sample(self, n: int, *, key: Key) -> Float[Array, "n d"]:
        """`n` independent draws, shape `(n, d)`."""


class Generator(AbstractGenerator):
    r"""An MLP generator $x = g_\theta(z)$, $z \sim N(0, I_k)$.

    **Arguments:** `noise_dim` $k$, `dim` $d$, `width`, `depth` (hidden layers, SiLU) and `key`
    (keyword only).

    **Raises:** `ValueError` when a size is not a positive integer.
    """

    mlp: eqx.nn.MLP
    noise_dim: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(self, noise_dim: int, dim: int, *, width: int = 64, depth: int = 2, key: Key):
        self.noise_dim = positive_int("noise_dim", noise_dim)
        self.dim = positive_int("dim", dim)
        width, depth = positive_int("width", width), positive_int("depth", depth)
        self.mlp = eqx.nn.MLP(self.noise_dim, self.dim, width, depth, jax.nn.silu, key=key)

    def __call__(self, z: Float[Array, " k"]) -> Float[Array, " d"]:
        return self.mlp(z)

    def sample(self, n: int, *, key: Key) -> Float[Array, "n d"]:
        return jax.vmap(self)(jr.normal(key, (n, self.noise_dim)))


class InvariantGenerator(AbstractGenerator):
    r"""The symmetrised generated law $S_G[(g_\theta)_\#\nu]$: $x = A_\sigma g_\theta(z)$.

    $\sigma$ is uniform on the group, fresh per sample, so the law is exactly $G$-invariant
    whatever $g_\theta$ is. **Arguments:** `generator`, a `Generator`; `group`, acting on its `d`.
    """

    generator: Generator
    group: AbstractGroup

    def __check_init__(self):
        if self.generator.dim != self.group.dim:
            raise ValueError(
                f"the generator outputs d={self.generator.dim} but the group acts on "
                f"d={self.group.dim}."
            )

    @property
    def dim(self) -> int:
        return self.generator.dim

    def sample(self, n: int, *, key: Key) -> Float[Array, "n d"]:
        zk, gk = jr.split(key)
        return RandomAction(self.group)(self.generator.sample(n, key=zk), key=gk)


class GANResult(NamedTuple):
    """What `train_gan` returns.

    - `generator`: the trained `AbstractGenerator` (an `InvariantGenerator` when invariant).
    - `critic`: the trained critic `(d,) -> ()` (an `InvariantFunction` when invariant).
    - `w1`: the critic's objective $\\mathbb{E}_{\\text{data}}f - \\mathbb{E}_{\\text{gen}}f$
      after each generator step, shape `(steps,)`: a running (uncertified) $W_1$ estimate.
    """

    generator: AbstractGenerator
    critic: eqx.Module
    w1: np.ndarray


class _State(NamedTuple):
    gen: eqx.Module
    critic: eqx.Module
    gen_opt: optax.OptState
    critic_opt: optax.OptState


class _GANStep(eqx.Module):
    """One generator step after `critic_steps` critic steps (WGAN-GP)."""

    gen_static: eqx.Module
    critic_static: eqx.Module
    data: jax.Array
    gen_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    penalty: jax.Array
    group: AbstractGroup | None
    batch: int = eqx.field(static=True)
    critic_steps: int = eqx.field(static=True)

    def _critic_step(self, generator, carry, key):
        cparams, cstate = carry
        rk, fk, pk = jr.split(key, 3)
        real = self.data[jr.randint(rk, (self.batch,), 0, self.data.shape[0])]
        fake = generator.sample(self.batch, key=fk)

        def loss(cparams):
            f = eqx.combine(cparams, self.critic_static)
            value = jnp.mean(jax.vmap(f)(real)) - jnp.mean(jax.vmap(f)(fake))
            gp = gradient_penalty(f, real, fake, pk, 1.0, self.group)
            return self.penalty * gp - value, value

        (_, value), grads = jax.value_and_grad(loss, has_aux=True)(cparams)
        updates, cstate = self.critic_opt.update(grads, cstate, cparams)
        return (eqx.apply_updates(cparams, updates), cstate), value

    def __call__(self, state: _State, key):
        ck, gk = jr.split(key)
        generator = eqx.combine(state.gen, self.gen_static)
        (cparams, cstate), values = jax.lax.scan(
            lambda carry, k: self._critic_step(generator, carry, k),
            (state.critic, state.critic_opt), jr.split(ck, self.critic_steps),
        )
        critic = eqx.combine(cparams, self.critic_static)

        def gen_loss(gparams):
            fake = eqx.combine(gparams, self.gen_static).sample(self.batch, key=gk)
            return -jnp.mean(jax.vmap(critic)(fake))

        grads = jax.grad(gen_loss)(state.gen)
        updates, gstate = self.gen_opt.update(grads, state.gen_opt, state.gen)
        return _State(eqx.apply_updates(state.gen, updates), cparams, gstate, cstate), values[-1]


def train_gan(
    generator: AbstractGenerator,
    data: ArrayLike,
    *,
    key: Key,
    group: AbstractGroup | None = None,
    steps: int = 1000,
    critic_steps: int = 2,
    batch_size: int = 256,
    width: int = 64,
    depth: int = 2,
    lr: Number = 1e-3,
    critic_lr: Number = 2e-3,
    penalty: Number = 10.0,
    chunk_size: int | None = None,
    progress: bool = True,
) -> GANResult:
    r"""Train a Wasserstein GAN (WGAN-GP) on `data`, group-invariant when `group` is given.

    Each step: `critic_steps` Adam steps on $\max_f \mathbb{E}_{\text{data}}f -
    \mathbb{E}_{\text{gen}}f - \lambda\,\mathbb{E}(|\nabla f(\hat x)| - 1)_+^2$, then one on
    $\min_\theta -\mathbb{E}_{\text{gen}}f$. With `group`, the critic is
    `symmetrize(mlp, group, kind="function")` and a plain `Generator` is wrapped in
    `InvariantGenerator` (both players symmetrised, as in the invariant-GAN paper).

    **Arguments:**

    - `generator`: an `AbstractGenerator`; `data`: the training set `(n, d)`, batches drawn
      with replacement; `key`: PRNG key. (Keyword only, as all below.)
    - `group`: an `AbstractGroup` acting on `d`, or `None` for the plain GAN.
    - `steps` (generator steps), `critic_steps`, `batch_size`; the critic's `width`, `depth`.
    - `lr`, `critic_lr`: Adam ($\beta = (0.5, 0.9)$) rates; `penalty` $\lambda$.
    - `chunk_size`: steps per compiled `lax.scan` (default about 20 bar updates); `progress`.

    **Returns:** a `GANResult(generator, critic, w1)`.

    **Raises:** `ValueError` for bad `data` (shape, NaN, a `d` the generator or group does not
    have), non-positive sizes or rates.
    """
    if not isinstance(generator, AbstractGenerator):
        raise TypeError(f"generator must be an AbstractGenerator, got {type(generator).__name__}.")
    data = float_array(data, "data")
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (n, d) with n >= 1, got {data.shape}.")
    data = check_finite(data, "data")
    d = data.shape[1]
    if generator.dim != d:
        raise ValueError(f"data has d={d} but the generator outputs d={generator.dim}.")
    if group is not None:
        if not isinstance(group, AbstractGroup) or group.dim != d:
            raise ValueError(f"group must be an AbstractGroup acting on d={d}, got {group!r}.")
        if isinstance(generator, Generator):
            generator = InvariantGenerator(generator, group)
    sizes = {k: positive_int(k, v) for k, v in (("steps", steps), ("critic_steps", critic_steps),
             ("batch_size", batch_size), ("width", width), ("depth", depth))}
    for name, v in (("lr", lr), ("critic_lr", critic_lr), ("penalty", penalty)):
        if not float(v) > 0:
            raise ValueError(f"{name} must be > 0, got {v!r}.")

    init_key, run_key = jr.split(key)
    mlp = eqx.nn.MLP(d, "scalar", sizes["width"], sizes["depth"], jax.nn.silu, key=init_key)
    critic = mlp if group is None else symmetrize(mlp, group, kind="function")
    opts = (optax.adam(lr, b1=0.5, b2=0.9), optax.adam(critic_lr, b1=0.5, b2=0.9))
    (gparams, gstatic), (cparams, cstatic) = (eqx.partition(m, eqx.is_inexact_array)
                                              for m in (generator, critic))
    state = _State(gparams, cparams, opts[0].init(gparams), opts[1].init(cparams))

    lam = jnp.asarray(penalty, data.dtype)
    step = _GANStep(gstatic, cstatic, data, opts[0], opts[1], lam, group, sizes["batch_size"],
                    sizes["critic_steps"])
    state, w1 = run_chunked(step, state, sizes["steps"], key=run_key, chunk_size=chunk_size,
                            progress=progress, desc="GAN", metric_name="w1")
    return GANResult(eqx.combine(state.gen, gstatic), eqx.combine(state.critic, cstatic), w1)

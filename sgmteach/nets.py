r"""Score networks $s_\theta(x, t)$ for data in any dimension."""

import equinox as eqx
import jax
import jax.numpy as jnp

from ._checks import check_time, positive_int
from ._types import Key, Scalar, Vector
from .sde import AbstractLinearSDE, check_linear


class TimeEmbedding(eqx.Module):
    r"""Fixed Fourier features $[\sin(2\pi f_j t/T), \cos(2\pi f_j t/T)]_j$ of the time.

    Frequencies are log-spaced from 1/2 to `max_freq`; nothing here is trained.
    """

    freqs: jax.Array
    T: Scalar = eqx.field(converter=jnp.asarray, default=1.0)

    def __init__(self, size: int = 32, max_freq: float = 32.0, T: float | Scalar = 1.0):
        if isinstance(size, bool) or int(size) != size or size < 2 or size % 2:
            raise ValueError(f"size must be an even integer >= 2, got {size}.")
        self.freqs = jnp.geomspace(0.5, max_freq, size // 2)
        self.T = T

    def __call__(self, t: Scalar) -> jax.Array:
        a = 2 * jnp.pi * self.freqs * t / self.T
        return jnp.concatenate([jnp.sin(a), jnp.cos(a)])


class ScoreMLP(eqx.Module):
    r"""An MLP score model $s_\theta(x, t)$ with a Fourier time embedding.

    Input $[x, \mathrm{emb}(t)]$, `depth` hidden layers of `width` SiLU units, output in
    $\mathbb{R}^d$. With `sde` given, the network predicts the noise $\varepsilon$ and the score is
    $-\varepsilon_\theta(x, t)/s_t$ (the marginal standard deviation $s_t$ of the SDE), the
    parameterisation of Song et al.'s tutorials: it keeps the output of order one while the true
    score grows like $1/s_t$ as $t \to 0$.

    **Arguments:**

    - `dim`: data dimension $d$.
    - `width`, `depth`: hidden width and number of hidden layers.
    - `key`: PRNG key for the initial weights. (Keyword only.)
    - `sde`: optional `AbstractLinearSDE` for the noise parameterisation; then the model is
      defined for $t \in (0, T]$ and raises at $t = 0$. (Keyword only.)
    - `embed_size`: size of the time embedding. (Keyword only.)

    Call it on one point: `model(x, t)` with shapes `(d,), () -> (d,)`; `jax.vmap` for batches.
    """

    mlp: eqx.nn.MLP
    embed: TimeEmbedding
    sde: AbstractLinearSDE | None
    dim: int = eqx.field(static=True)

    def __init__(self, dim: int, width: int = 128, depth: int = 3, *, key: Key,
                 sde: AbstractLinearSDE | None = None, embed_size: int = 32):
        dim, width, depth = (positive_int(n, v) for n, v in
                             (("dim", dim), ("width", width), ("depth", depth)))
        if sde is not None:
            check_linear(sde, "ScoreMLP's noise parameterisation")
        T = 1.0 if sde is None else sde.T
        self.embed = TimeEmbedding(embed_size, T=T)
        self.mlp = eqx.nn.MLP(dim + embed_size, dim, width, depth, activation=jax.nn.silu, key=key)
        self.sde = sde
        self.dim = dim

    def __call__(self, x: Vector, t: Scalar) -> Vector:
        # The embedding's frequencies and the SDE are fixed, not parameters: `train` leaves
        # them out (`trainable`), and stopping their gradients here keeps a hand-written loop
        # that differentiates every float array from moving them.
        embed, sde = _frozen(self.embed), _frozen(self.sde)
        out = self.mlp(jnp.concatenate([x, embed(t)]))
        if sde is None:
            return out
        # -eps/s_t is singular at t = 0, where s_0 = 0: a clear error, not inf/NaN.
        t = check_time(t, sde.T, "t", open_left=True)
        return -out / sde.marginal_mean_std(t)[1]


def _frozen(tree):
    return jax.tree_util.tree_map(
        lambda v: jax.lax.stop_gradient(v) if eqx.is_inexact_array(v) else v, tree
    )


def trainable(model):
    """Filter spec (a pytree of bools like `model`): True at the arrays training changes.

    Every inexact array, except the fixed parts of each `ScoreMLP` inside `model` (its time
    embedding and its SDE), whose gradients the model stops.
    """
    def spec(node):
        if isinstance(node, ScoreMLP):
            flags = jax.tree_util.tree_map(eqx.is_inexact_array, node)
            return eqx.tree_at(lambda m: (m.embed, m.sde), flags, replace=(False, False),
                               is_leaf=lambda x: x is None)
        return eqx.is_inexact_array(node)

    return jax.tree_util.tree_map(spec, model, is_leaf=lambda x: isinstance(x, ScoreMLP))


def count_params(model) -> int:
    """Number of trainable scalars in a model (fixed embeddings and SDEs excluded)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, trainable(model)))
    return int(sum(x.size for x in leaves))



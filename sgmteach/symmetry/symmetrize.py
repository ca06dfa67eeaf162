r"""$S_G$ on every kind of object, equivariance diagnostics and data augmentation.

`symmetrize` applies the one operator $S_G$ of `sgmteach.symmetry.groups` to a Gaussian mixture
(exactly), a sample set (its orbit set), a vector field or a function. `equivariance_error` and
`model_form_error` measure how far a model is from equivariant; `symmetry_errors` measures, with
exact scores only, what a symmetry is worth; `RandomAction` is data augmentation.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from .._types import Key
from ..empirical import EmpiricalScore
from ..mixture import ExactScore, GaussianMixture
from .groups import AbstractGroup, EquivariantScore, InvariantFunction, _check_x

KINDS = ("field", "function")


def symmetrize(obj, group: AbstractGroup, *, kind: str | None = None):
    r"""Apply $S_G$ to a distribution, a sample set, a vector field or a function.

    - `GaussianMixture` $\sum_k w_k N(\mu_k, \Sigma_k)$ $\to$ the exact mixture
      $\sum_{g,k} \frac{w_k}{|G|} N(A_g\mu_k, A_g\Sigma_k A_g^\top)$, $|G| k$ components.
    - array `(n, d)` $\to$ the orbit set `(|G| n, d)`, group-major (rows `i*n:(i+1)*n` are
      $A_i x$), the empirical measure $S_G \pi^n$.
    - callable $\to$ `EquivariantScore` when `kind="field"` (the default: scores are what this
      package symmetrises) or `InvariantFunction` when `kind="function"`.

    **Raises:** `ValueError` for a dimension mismatch, a sample set that is not `(n, d)` or an
    unknown `kind`; `TypeError` for anything else.
    """
    if not isinstance(group, AbstractGroup):
        raise TypeError(f"group must be an AbstractGroup, got {type(group).__name__}.")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if isinstance(obj, GaussianMixture):
        if obj.dim != group.dim:
            raise ValueError(f"the mixture has d={obj.dim} but the group acts on d={group.dim}.")
        a = group.matrices_like(obj.means)
        means = jnp.einsum("gij,kj->gki", a, obj.means).reshape(-1, obj.dim)
        covs = jnp.einsum("gij,kjl,gml->gkim", a, obj.covs, a).reshape(-1, obj.dim, obj.dim)
        covs = 0.5 * (covs + jnp.swapaxes(covs, 1, 2))  # symmetric to the last bit
        weights = jnp.tile(obj.weights, group.order) / group.order
        return GaussianMixture(weights, means, covs)
    if isinstance(obj, jax.Array | np.ndarray):
        x = jnp.asarray(obj)
        if x.ndim != 2:
            raise ValueError(f"a sample set must have shape (n, d), got {x.shape}.")
        _check_x(x, group.dim, "the sample set")
        return group.orbit(x).reshape(-1, group.dim)
    if callable(obj):
        if (kind or "field") == "field":
            return EquivariantScore(obj, group)
        return InvariantFunction(obj, group)
    raise TypeError(
        "symmetrize takes a GaussianMixture, an (n, d) array or a callable, got "
        f"{type(obj).__name__}."
    )


@eqx.filter_jit
def _equivariance_defects(score, group, x, t):
    s = jax.vmap(score, in_axes=(0, None))(x, t)  # (n, d)
    s_gx = jax.vmap(jax.vmap(score, in_axes=(0, None)), in_axes=(0, None))(group.orbit(x), t)
    return jnp.max(jnp.linalg.norm(s_gx - group.orbit(s), axis=-1), axis=1)  # (g,)


def equivariance_error(
    score: Callable, group: AbstractGroup, x: Float[Array, "n d"], t: Real[ArrayLike, ""]
) -> Float[Array, " g"]:
    r"""The equivariance defect $\max_i |s(A_g x_i, t) - A_g s(x_i, t)|$ for each element $g$.

    **Arguments:** `score`, `(x, t) -> s` on one point; `group`; `x`, test points `(n, d)`;
    `t`, the time.

    **Returns:** shape `(g,)`; zero (to round-off) for every element iff `score` is equivariant
    on these points.
    """
    _check_x(x, group.dim)
    return _equivariance_defects(score, group, x, jnp.asarray(t, dtype=x.dtype))


@eqx.filter_jit
def _model_form(score, group, x, t):
    s = jax.vmap(score, in_axes=(0, None))(x, t)
    sym = jax.vmap(EquivariantScore(score, group), in_axes=(0, None))(x, t)
    return jnp.mean(jnp.sum((s - sym) ** 2, axis=-1))


def model_form_error(
    score: Callable, group: AbstractGroup, x: Float[Array, "n d"], t: Real[ArrayLike, ""]
) -> Float[Array, ""]:
    r"""Monte-Carlo model-form error $\frac1n\sum_i |s(x_i, t) - S_G s(x_i, t)|^2$.

    With $x_i$ drawn from a $G$-invariant law $\rho_t$ this estimates the term that, by
    Pythagoras in $L^2(\rho_t)$, separates the loss of $s$ from that of $S_G s$ (the
    model-form decomposition of "Equivariant score-based generative models provably learn
    distributions with symmetries efficiently"). Zero for an equivariant `score`.
    """
    _check_x(x, group.dim)
    return _model_form(score, group, x, jnp.asarray(t, dtype=x.dtype))


class RandomAction(eqx.Module):
    """Data augmentation: one uniformly random group element per sample, fresh per call.

    Use as `train(..., augment=RandomAction(group))`; call as `aug(x0_batch, key=key)` with
    `x0_batch` of shape `(n, d)`.
    """

    group: AbstractGroup

    def __call__(self, x: Float[Array, "n d"], *, key: Key) -> Float[Array, "n d"]:
        _check_x(x, self.group.dim)
        idx = jr.randint(key, (x.shape[0],), 0, self.group.order)
        return jnp.einsum("nij,nj->ni", self.group.matrices_like(x)[idx], x)


def random_action(group: AbstractGroup) -> RandomAction:
    """The augmentation callable for `train(..., augment=random_action(group))`."""
    if not isinstance(group, AbstractGroup):
        raise TypeError(f"group must be an AbstractGroup, got {type(group).__name__}.")
    return RandomAction(group)


@eqx.filter_jit
def symmetry_errors(target, sde, group, data, n, t, probe_x0, probe_z):
    r"""Relative errors of three fields against the exact population score at time `t`.

    The fields, built from the first `n` rows of `data` (`n` is traced: rows past it get weight
    zero, so moving `n` never recompiles): the memorising empirical score, the score of the
    symmetrised empirical measure (the equivariant DSM minimiser) and the plain group average
    of the memorising score. Errors are
    $\mathbb{E}_{p_t}|u - \nabla\log p_t|^2 / \mathbb{E}_{p_t}|\nabla\log p_t|^2$ over the probe
    points $x_t = m_t x_0 + s_t z$ (`probe_x0` from the target, `probe_z` standard normal).

    **Returns:** `(errors, orbit)`: shape `(3,)` in the order above, and the orbit set
    `symmetrize(data, group)` of shape `(|G| N, d)`.
    """
    m, s = sde.marginal_mean_std(t)
    xt = m * probe_x0 + s * probe_z
    truth = ExactScore(target, sde)(xt, t)
    mask = (jnp.arange(data.shape[0]) < n).astype(data.dtype)
    plain = EmpiricalScore(data, sde, weights=mask / n)
    orbit = symmetrize(data, group)  # (|G| N, d), group-major
    sym = EmpiricalScore(orbit, sde, weights=jnp.tile(mask, group.order) / (n * group.order))
    naive = EquivariantScore(plain, group)
    fields = (plain(xt, t), sym(xt, t), jax.vmap(naive, in_axes=(0, None))(xt, t))
    norm = jnp.sum(truth**2)
    return jnp.stack([jnp.sum((u - truth) ** 2) / norm for u in fields]), orbit

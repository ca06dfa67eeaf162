r"""The score-form HJB residual, and score matching regularised by it.

A score-based model is a mean-field game (Zhang, Katsoulakis, "A mean-field games laboratory for
generative modeling", 2023): the log-density $V = \log\eta_t$ of the forward SDE
$dX = f(X, t)\,dt + g(t)\,dW$ solves the viscous Hamilton-Jacobi equation (the Hopf-Cole image
of the Fokker-Planck equation)

$$\partial_t V = -\nabla\cdot f - f\cdot\nabla V
+ \tfrac{g^2}{2}\big(\Delta V + |\nabla V|^2\big),$$

and the score $s = \nabla V$ solves its gradient. For any vector field $s(x, t)$ the residual

$$R[s] = \partial_t s + \nabla(\nabla\cdot f) + \nabla(f\cdot s) - \tfrac{g^2}{2}\,\Delta s
- \tfrac{g^2}{2}\nabla|s|^2$$

is zero exactly when $s$ is a score of the forward process (given its value at one time). This
is the score form of the first author's own notebook (`benjzhang/tap-sgm`,
`hjbsgm_simple.ipynb`; `shared/docs/papers/addendum-a-ndsm-mfg-w1w2.md` §2.1-2.3): a vector
score, $\nabla(\nabla\cdot s)$ written as $\Delta s$ (the two agree for gradient fields), and
$\nabla(f\cdot s)_i = \sum_j \partial_i f_j\,s_j + \sum_j f_j\,\partial_i s_j$. The paper's own
statement of the regulariser could not be read; this is the reconstruction of the notes.

Derivatives are by autodiff: $\partial_t s$ by a forward-mode derivative in $t$; the transposed
Jacobian products by one `vjp` each; $\Delta s$ and $\nabla(\nabla\cdot f)$ exactly (the full
second derivative, `jacfwd` twice) up to `max_exact_dim` = 10 dimensions (the notes' choice:
$d^3$ second derivatives per point is cheap there), and above it by Hutchinson's estimator
$\Delta s_i = \mathbb{E}_z[z^\top\nabla^2 s_i\,z]$ with Rademacher probes $z$ (a `jvp` of a
`jvp`), unbiased, with standard error falling as $1/\sqrt{\text{probes}}$.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, check_time, float_array, positive_int
from .._types import Key
from ..losses import WEIGHTINGS, _noised, dsm_loss
from ..sde import AbstractSDE, check_linear
from ..train import train

NORMS = ("l1", "l2")
SCALINGS = ("sigma3", "none")


class HJBTerms(NamedTuple):
    r"""The five terms of the score-form residual at each point, each of shape `(n, d)`.

    `residual` is their sum: `time` $\partial_t s$, `drift` $\nabla(\nabla\cdot f)$,
    `transport` $\nabla(f\cdot s)$, `laplacian` $-\tfrac{g^2}{2}\Delta s$, `nonlinear`
    $-\tfrac{g^2}{2}\nabla|s|^2$. `scale()` is $\sum$ of their absolute values: the size of the
    numbers that cancel, which sets the round-off of `residual`.
    """

    time: Float[Array, "n d"]
    drift: Float[Array, "n d"]
    transport: Float[Array, "n d"]
    laplacian: Float[Array, "n d"]
    nonlinear: Float[Array, "n d"]

    @property
    def residual(self) -> Float[Array, "n d"]:
        return self.time + self.drift + self.transport + self.laplacian + self.nonlinear

    def scale(self) -> Float[Array, "n d"]:
        return sum(jnp.abs(v) for v in self)


def _terms_point(score, sde, x, t, probes):
    """The five terms at one point `x` `(d,)`, time `t` `()`; `probes` `None` or `(k, d)`."""
    s_of_x = lambda y: score(y, t)  # noqa: E731
    f_of_x = lambda y: sde.drift(y, t)  # noqa: E731
    s, s_vjp = jax.vjp(s_of_x, x)
    f, f_vjp = jax.vjp(f_of_x, x)
    ds_dt = jax.jvp(lambda tt: score(x, tt), (t,), (jnp.ones_like(t),))[1]
    transport = f_vjp(s)[0] + s_vjp(f)[0]  # J_f^T s + J_s^T f
    g2 = sde.diffusion(t) ** 2
    nonlinear = -g2 * s_vjp(s)[0]  # -(g^2/2) grad |s|^2 = -g^2 J_s^T s
    if probes is None:
        hess = jax.jacfwd(jax.jacfwd(s_of_x))(x)  # (d, d, d): [i, j, k] = d_k d_j s_i
        lap = jnp.einsum("ijj->i", hess)
        grad_div_f = jax.grad(lambda y: jnp.trace(jax.jacfwd(f_of_x)(y)))(x)
    else:
        def second(z):  # z^T (d^2 s_i) z for every i, and grad_x of z^T J_f z
            d2 = jax.jvp(lambda y: jax.jvp(s_of_x, (y,), (z,))[1], (x,), (z,))[1]
            gd = jax.grad(lambda y: z @ jax.jvp(f_of_x, (y,), (z,))[1])(x)
            return d2, gd

        d2, gd = jax.vmap(second)(probes)
        lap, grad_div_f = jnp.mean(d2, axis=0), jnp.mean(gd, axis=0)
    return ds_dt, grad_div_f, transport, -0.5 * g2 * lap, nonlinear


def _probes(key, n, k, d, dtype):
    return jr.rademacher(key, (n, k, d), dtype=dtype)


def _check_inputs(score, sde, x, who):
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be an AbstractSDE (e.g. sg.VPSDE), got {type(sde).__name__}.")
    if not callable(score):
        raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}.")
    x = float_array(x, "x")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{who}: x must have shape (n, d) with n >= 1, got {x.shape}.")
    dim = getattr(score, "dim", None)
    if dim is not None and dim != x.shape[1]:
        raise ValueError(f"{who}: x has d={x.shape[1]} but the score model has d={dim}.")
    return check_finite(x, "x")


def _use_hutchinson(d, key, max_exact_dim, who):
    if d <= max_exact_dim:
        return False
    if key is None:
        raise ValueError(f"{who}: d={d} > max_exact_dim={max_exact_dim}, so the Laplacian is "
                         "estimated by Hutchinson's estimator, which needs a key=.")
    return True


def hjb_terms(
    score,
    sde: AbstractSDE,
    x: ArrayLike,
    t,
    *,
    key: Key | None = None,
    probes: int = 16,
    max_exact_dim: int = 10,
) -> HJBTerms:
    """The terms of the score-form HJB residual of `score` at points `x`, time `t`.

    As `hjb_residual`, which returns their sum; see `HJBTerms`.
    """
    x = _check_inputs(score, sde, x, "hjb_terms")
    n, d = x.shape
    t = check_time(jnp.asarray(t, x.dtype), sde.T, "t")
    if t.ndim != 0:
        raise ValueError(f"t must be a scalar time, got shape {t.shape}.")
    probes = positive_int("probes", probes)
    z = None
    if _use_hutchinson(d, key, positive_int("max_exact_dim", max_exact_dim), "hjb_terms"):
        z = _probes(key, n, probes, d, x.dtype)
    return HJBTerms(*_terms_batch(score, sde, x, t, z))


@eqx.filter_jit
def _terms_batch(score, sde, x, t, z):
    if z is None:
        return jax.vmap(lambda xi: _terms_point(score, sde, xi, t, None))(x)
    return jax.vmap(lambda xi, zi: _terms_point(score, sde, xi, t, zi))(x, z)


def hjb_residual(
    score,
    sde: AbstractSDE,
    x: ArrayLike,
    t,
    *,
    key: Key | None = None,
    probes: int = 16,
    max_exact_dim: int = 10,
) -> Float[Array, "n d"]:
    r"""The score-form HJB (Fokker-Planck) residual $R[s](x, t)$ of a score model.

    $R[s] = \partial_t s + \nabla(\nabla\cdot f) + \nabla(f\cdot s) - \tfrac{g^2}{2}\Delta s -
    \tfrac{g^2}{2}\nabla|s|^2$ (module docstring), zero for the exact score of the forward
    process of `sde` (e.g. `sg.ExactScore(target, sde)`), up to float round-off relative to
    `hjb_terms(...).scale()`.

    **Arguments:**

    - `score`: callable `score(x, t)` on one point, `(d,), () -> (d,)` (`sg.ExactScore`,
      `sg.ScoreMLP`, ...), differentiable in `x` and `t`.
    - `sde`: any `AbstractSDE` (linear or not: its drift is differentiated by autodiff).
    - `x`: points `(n, d)`; `t`: one time in $[0, T]$ (a traced value: a new `t` never
      compiles).
    - `key`, `probes`: Rademacher probes of Hutchinson's estimator, used when
      $d >$ `max_exact_dim` (default 10); below it the Laplacian is exact and `key` is unused.

    **Returns:** $R$ at each point, `(n, d)`.

    **Raises:** `ValueError` for `x` not `(n, d)`, NaN/inf in `x`, a `d` the model does not have,
    a time outside $[0, T]$ (under `jit` an `EquinoxRuntimeError`), or a missing `key` above
    `max_exact_dim`; `TypeError` for an `sde` that is not an `AbstractSDE`.
    """
    return hjb_terms(score, sde, x, t, key=key, probes=probes,
                     max_exact_dim=max_exact_dim).residual


# ---------------------------------------------------------------------------------------------
# HJB-regularised score matching


class HJBLoss(eqx.Module):
    r"""Denoising score matching plus `hjb_weight` times the HJB residual, as a `train` loss.

    $$\mathcal{L}(\theta) = \mathrm{DSM}(\theta) + w_{\mathrm{HJB}}\;\frac1n\sum_i
    \big\|c(t_i)\,R[s_\theta](x_{t_i}, t_i)\big\|_p^p,$$

    the residual evaluated at the same noised points $x_t$ DSM uses (no extra simulation), with
    `norm` `"l1"` ($p = 1$, summed over components, as the author's notebook) or `"l2"`. The
    scaling $c(t)$:

    - `"sigma3"` (default, ours): $c = s_t^3/g(t)^2$. The residual of a network's error grows
      like $g^2/s_t^3$ as $t \to 0$ (each term is two derivatives of a field of size $1/s_t$ on
      the length scale $s_t$), so an unscaled penalty is set by the smallest times drawn; scaled,
      every time counts alike, as $\lambda = s_t^2$ does for DSM.
    - `"none"`: the raw residual, the author's notebook (OU noising, $t \ge 10^{-3}$).

    `hjb_weight` and `dsm_weight` are arrays, so a new weight is a new value in the same compiled
    training chunk. The author's notebook trains the residual against an ISM term at $t = 0$
    only (DSM weight 0); the notes and the issue's tutorial use DSM + residual. Call it as
    `train`'s `loss_fn`: `loss(model, sde, x0, t, *, key, weighting)`.
    """

    hjb_weight: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    norm: str = eqx.field(static=True, default="l1")
    scaling: str = eqx.field(static=True, default="sigma3")
    dsm_weight: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)

    def __check_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}.")
        for name in ("hjb_weight", "dsm_weight"):
            v = getattr(self, name)
            if v.ndim != 0:
                raise ValueError(f"{name} must be a scalar, got shape {v.shape}.")
            if not isinstance(v, jax.core.Tracer) and not bool(v >= 0):
                raise ValueError(f"{name} must be >= 0, got {float(v)}.")

    def residual_penalty(self, model, sde, x0, t, *, key: Key):
        r"""$\frac1n\sum_i\|c(t_i) R(x_{t_i}, t_i)\|_p^p$ at the noised points of `key`."""
        xt, _, s = _noised(sde, x0, t, key)  # the points dsm_loss draws with this key
        r = jnp.stack(jax.vmap(lambda xi, ti: _terms_point(model, sde, xi, ti, None))(xt, t))
        r = jnp.sum(r, axis=0)
        if self.scaling == "sigma3":
            r = r * (s**3 / jax.vmap(sde.diffusion)(t) ** 2)[:, None]
        per_point = jnp.sum(jnp.abs(r) if self.norm == "l1" else r**2, axis=-1)
        return jnp.mean(per_point)

    def __call__(self, model, sde, x0, t, *, key: Key, weighting: str = "sigma2"):
        check_linear(sde, "HJBLoss (its DSM term)")
        dsm = dsm_loss(model, sde, x0, t, key=key, weighting=weighting)
        x0 = float_array(x0, "x0")
        t = jnp.broadcast_to(jnp.asarray(t, x0.dtype), x0.shape[:1])
        return self.dsm_weight * dsm + self.hjb_weight * self.residual_penalty(
            model, sde, x0, t, key=key)


def train_hjb(
    model,
    sde,
    data,
    *,
    hjb_weight,
    key: Key,
    norm: str = "l1",
    scaling: str = "sigma3",
    weighting: str = "sigma2",
    **train_kwargs,
):
    r"""HJB-regularised score matching: `sg.train` with `HJBLoss(hjb_weight, norm, scaling)`.

    The shared chunked loop, its defaults (Adam with warm-up and cosine decay, EMA) and its
    progress bar; every other keyword goes to `sg.train`. `hjb_weight` is traced: runs at
    different weights (same shapes and sizes) share one compiled chunk. The residual needs
    second derivatives of the model at every point, so a step costs several DSM steps
    (measured in tutorial 06).

    **Returns:** `(model, losses)` as `sg.train`; the loss is the total, DSM plus penalty.

    **Raises:** as `sg.train` and `HJBLoss` (a negative weight, an unknown norm or scaling).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}.")
    loss = HJBLoss(jnp.asarray(hjb_weight, float), norm, scaling)
    return train(model, sde, data, key=key, loss_fn=loss, weighting=weighting, **train_kwargs)

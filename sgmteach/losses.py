r"""Score-matching losses and the denoising loss's irreducible floor.

With $x_t = m_t x_0 + s_t z$, $z \sim N(0, I)$, and a weight $\lambda(t)$:

- denoising score matching (DSM): $\lambda(t)\,\|s(x_t, t) + z/s_t\|^2$;
- explicit score matching (ESM): $\lambda(t)\,\|s(x_t, t) - \nabla\log p_t(x_t)\|^2$.

They differ by a constant that does not depend on $s$ (Vincent 2011):
$\mathrm{DSM}(s) = \mathrm{ESM}(s) + C(t)$ with
$C(t) = \lambda(t)\big(d/s_t^2 - \mathbb{E}\,\|\nabla\log p_t(X_t)\|^2\big)$, the gap between the
conditional and the marginal Fisher information. So the DSM loss of a perfect model is $C$, not
zero: `dsm_floor` computes it exactly for a mixture.

Weightings: `"sigma2"` ($\lambda = s_t^2$, the noise-prediction loss, default), `"likelihood"`
($\lambda = g(t)^2$, Song et al. 2021's likelihood weighting) and `"none"` ($\lambda = 1$).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ._checks import check_time, float_array
from ._types import Key
from .sde import check_linear

WEIGHTINGS = ("sigma2", "likelihood", "none")


def _check_weighting(weighting: str):
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}.")


def _weight_over_var(sde, t, s, weighting: str):
    r"""$\lambda(t)/s_t^2$ (`weighting` already checked)."""
    if weighting == "sigma2":
        return jnp.ones_like(s)
    if weighting == "likelihood":
        return jax.vmap(sde.diffusion)(t) ** 2 / s**2
    return 1.0 / s**2


def _check_batch(sde, x0, t, weighting: str):
    """Validated `(x0, t)`: float `x0` of shape `(n, d)`, times `(n,)` in `[0, T]`.

    `"likelihood"` and `"none"` divide by $s_t^2$, which is 0 at $t = 0$: there the times must
    lie in $(0, T]$. Integer data is promoted to float (times are never cast to its dtype).
    """
    check_linear(sde, "a denoising loss")
    x0 = float_array(x0, "x0")
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (n, d), got {x0.shape}.")
    t = check_time(jnp.asarray(t, dtype=x0.dtype), sde.T, "t", open_left=weighting != "sigma2")
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x0.shape[0]):
        raise ValueError(f"t must be a scalar or have shape (n,) = ({x0.shape[0]},), got "
                         f"{t.shape}.")
    return x0, jnp.broadcast_to(t, x0.shape[:1])


def _noised(sde, x0, t, key):
    m, s = jax.vmap(sde.marginal_mean_std)(t)
    z = jr.normal(key, x0.shape)
    return m[:, None] * x0 + s[:, None] * z, z, s


def dsm_loss(score, sde, x0, t, *, key: Key, weighting: str = "sigma2"):
    r"""Denoising score-matching loss, averaged over a batch.

    $\frac1n\sum_i \lambda(t_i)\,\|s(x_{t_i}, t_i) + z_i/s_{t_i}\|^2$, computed as
    $\frac{\lambda}{s^2}\|s_t\,s(x_t,t) + z\|^2$ so that small $s_t$ stays well conditioned.

    **Arguments:**

    - `score`: callable `(x, t) -> s` on one point, shapes `(d,), () -> (d,)`.
    - `sde`: an `AbstractLinearSDE` (the loss needs $m_t$, $s_t$ in closed form).
    - `x0`: data batch, shape `(n, d)` (integers are promoted to float); `t`: times, shape
      `(n,)` or `()`, in $[0, T]$, or $(0, T]$ for `"likelihood"` and `"none"`.
    - `key`: PRNG key for $z$. (Keyword only.)
    - `weighting`: `"sigma2"`, `"likelihood"` or `"none"`. (Keyword only.)

    **Returns:** the loss, shape `()`.

    **Raises:** `ValueError` for an unknown weighting, a bad shape or a time outside the
    interval above (an `EquinoxRuntimeError` with the same message under `jit`).
    """
    _check_weighting(weighting)
    x0, t = _check_batch(sde, x0, t, weighting)
    xt, z, s = _noised(sde, x0, t, key)
    pred = jax.vmap(score)(xt, t)
    w = _weight_over_var(sde, t, s, weighting)
    return jnp.mean(w * jnp.sum((s[:, None] * pred + z) ** 2, axis=-1))


def esm_loss(score, target, sde, x0, t, *, key: Key, weighting: str = "sigma2"):
    r"""Explicit score-matching loss against the exact score of a `GaussianMixture` target.

    $\frac1n\sum_i \lambda(t_i)\,\|s(x_{t_i}, t_i) - \nabla\log p_{t_i}(x_{t_i})\|^2$, with
    $x_{t_i}$ drawn exactly as in `dsm_loss` (same `key`, same noise), so that
    `dsm_loss - esm_loss` estimates `dsm_floor` with common random numbers.
    """
    _check_weighting(weighting)
    x0, t = _check_batch(sde, x0, t, weighting)
    xt, _, s = _noised(sde, x0, t, key)
    pred = jax.vmap(score)(xt, t)
    exact = jax.vmap(lambda x, ti: target.diffuse(sde, ti).score(x))(xt, t)
    w = _weight_over_var(sde, t, s, weighting)
    return jnp.mean(w * s**2 * jnp.sum((pred - exact) ** 2, axis=-1))


@eqx.filter_jit
def explicit_score_error(score, target, sde, t, x0, z):
    r"""Explicit score-matching error of `score` at one time $t$, with its standard error.

    $\mathrm{ESM}(t) = \mathbb{E}_{p_t}\, s_t^2\,\|s_\theta(X_t, t) - \nabla\log p_t(X_t)\|^2$
    against the exact score of the `GaussianMixture` `target` pushed through `sde`, averaged
    over the points $x_t = m_t x_0 + s_t z$. The weight $s_t^2$ is `esm_loss`'s `"sigma2"`: it
    keeps the error comparable across $t$ (the score itself grows like $1/s_t$). With the same
    `x0` and `z` at every $t$ (common random numbers), the error is a smooth function of $t$.
    For `z = jr.normal(key, x0.shape)` the mean equals
    `esm_loss(score, target, sde, x0, t, key=key)`.

    **Arguments:** `score` (callable `(x, t) -> s` on one point), `target`, `sde` (an
    `AbstractLinearSDE`), `t` (a time in $[0, T]$, traced: a new value never compiles), `x0`
    (draws of the target, `(n, d)`), `z` (standard normal draws, the same shape).

    **Returns:** `(mean, standard_error)`, both shape `()`; the standard error is over the `n`
    points.
    """
    check_linear(sde, "explicit_score_error")
    if x0.ndim != 2 or x0.shape != z.shape or x0.shape[0] < 2:
        raise ValueError(f"x0 and z must have the same shape (n >= 2, d), got {x0.shape} and "
                         f"{z.shape}.")
    m, s = sde.marginal_mean_std(t)
    xt = m * x0 + s * z
    diff = jax.vmap(score, in_axes=(0, None))(xt, t) - target.diffuse(sde, t).score(xt)
    per_point = jnp.sum((s * diff) ** 2, axis=-1)
    return jnp.mean(per_point), jnp.std(per_point, ddof=1) / jnp.sqrt(per_point.shape[0])


def dsm_floor(target, sde, t, *, key: Key, n: int = 20_000, weighting: str = "sigma2"):
    r"""The irreducible part of the DSM loss, $\mathbb{E}_t\,C(t)$, for a mixture target.

    $C(t) = \frac{\lambda(t)}{s_t^2}\big(d - s_t^2\,\mathbb{E}\|\nabla\log p_t(X_t)\|^2\big)$, by
    Monte Carlo over `n` exact draws of $X_t$ (the score itself is exact). `t` is a time or an
    array of times; with an array of `n` times, draw `i` uses `t[i]`; with any other length,
    each draw picks one of them uniformly at random (with replacement), so the result is the
    floor of a loss whose times are distributed like `t`.

    **Returns:** `(mean, standard_error)` of the estimate.
    """
    _check_weighting(weighting)
    check_linear(sde, "dsm_floor")
    t = jnp.atleast_1d(jnp.asarray(t, dtype=float))
    t = check_time(t, sde.T, "t", open_left=weighting != "sigma2")
    tk, xk, zk = jr.split(key, 3)
    ti = t[jr.randint(tk, (n,), 0, t.shape[0])] if t.shape[0] != n else t
    x0 = target.sample(n, key=xk)
    xt, _, s = _noised(sde, x0, ti, zk)
    exact = jax.vmap(lambda x, tt: target.diffuse(sde, tt).score(x))(xt, ti)
    w = _weight_over_var(sde, ti, s, weighting)
    c = w * (target.dim - s**2 * jnp.sum(exact**2, axis=-1))
    return jnp.mean(c), jnp.std(c) / jnp.sqrt(n)

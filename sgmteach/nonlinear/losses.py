r"""Nonlinear denoising score matching (NDSM): the one-step Euler target and control variates.

With a nonlinear drift the transition density $p(x_t \mid x_0)$ is unknown, so DSM's target is
gone. The Euler–Maruyama chain of the SDE still has an exactly Gaussian step:
$X_{k+1} = \mu_k + \sigma_k\sqrt h\,Z_k$ with $\mu_k = X_k + h f(X_k, t_k)$, $\sigma_k = g(t_k)$.
Hence $\nabla\log p_{k+1}(y) = \mathbb E[-Z_k/(\sigma_k\sqrt h) \mid X_{k+1} = y]$, and the
minimiser of

$$\ell_{\text{raw}} = \lambda_k\,\big\|s_\theta(X_{k+1}, t_{k+1}) + Z_k/(\sigma_k\sqrt h)\big\|^2$$

is the exact score of the chain's marginal. Expanding the square shows two zero-mean terms whose
variance explodes as $h \to 0$ (for $\lambda = 1$):
$\tfrac{2}{\sigma\sqrt h} s_\theta(\mu_k)\cdot Z_k$ (variance $O(1/h)$) and
$(\|Z_k\|^2 - d)/(\sigma^2 h)$ (standard deviation $\sqrt{2d}/(\sigma^2h)$).
The control variates remove them:

- `"plugin"`: $\ell_{\text{CV}} = \lambda_k\big[\|s_\theta(X_{k+1})\|^2
  + \tfrac{2}{\sigma_k\sqrt h}\big(s_\theta(X_{k+1}) - s_\theta(\mu_k)\big)\cdot Z_k\big]$, with
  gradients through both evaluations of $s_\theta$ (that is what cancels the gradient's noise).
  As $h \to 0$ it tends to Hyvärinen's implicit score matching $\|s\|^2 + 2\nabla\cdot s$.
- `"neural"`: $s_\theta(\mu_k)$ replaced by $c = s_\theta(\mu_k) + r_\phi(\mu_k, t_{k+1})$, a
  residual network $r_\phi$ trained to minimise the loss's second moment (`cv_objective`).
  `residual=False` gives the form of the notes (§4.2), $c = c_\phi(\mu_k)$ alone: it reduces the
  *loss's* variance, but as $c_\phi$ does not depend on $\theta$ the $\theta$-gradient is exactly
  the raw one (tested; `benchmarks/control_variate.py` measures it). The residual form's
  $\theta$-gradient is, for the same reason, exactly the plug-in's: $r_\phi$ learns the $O(h)$
  remainder of the variance-optimal $c^*(\mu) = \mathbb E[ZZ^\top s_\theta(\mu + \sigma\sqrt h Z)
  \mid \mu]$ and lowers the *loss's* variance below the plug-in's, never the gradient's. A
  control variate for the gradient has to depend on $\theta$; the plug-in one does.

Both controlled losses drop the constant $\lambda_k d/(\sigma_k^2 h)$ (`ndsm_constant`):
$\mathbb E\,\ell_{\text{raw}} = \mathbb E\,\ell_{\text{CV}} + $ that constant, and the expected
gradients are equal. Weightings: `"sigma2h"` ($\lambda_k = \sigma_k^2 h$, the analogue of noise
prediction, default) or `"none"` ($\lambda_k = 1$, the notes' table).

Everything here is this package's reconstruction (`shared/docs/papers/nonlinear-dsm.md` §3–4,
addendum A §1): the paper's method section could not be read. Cite Birrell, Katsoulakis,
Rey-Bellet, Zhang, Zhu, "Nonlinear denoising score matching for enhanced learning of structured
distributions" (2024) for the idea.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_finite, check_time, float_array, is_concrete
from .._types import Key
from ..nets import ScoreMLP, _frozen
from ..sde import AbstractSDE

CONTROL_VARIATES = ("none", "plugin", "neural")
NDSM_WEIGHTINGS = ("sigma2h", "none")


def _check_h(h):
    h = jnp.asarray(h, dtype=float)
    if h.ndim:
        raise ValueError(f"h must be a scalar step, got shape {h.shape}.")
    if is_concrete(h):
        if not float(h) > 0 or not jnp.isfinite(h):
            raise ValueError(f"the step h must be > 0, got {float(h):g}.")
        return h
    return eqx.error_if(h, ~((h > 0) & jnp.isfinite(h)), "the step h must be > 0")


def _check_args(sde, x, t, h, weighting, control_variate, cv_model):
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}.")
    if weighting not in NDSM_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {NDSM_WEIGHTINGS}, got {weighting!r}.")
    if control_variate not in CONTROL_VARIATES:
        raise ValueError(f"control_variate must be one of {CONTROL_VARIATES}, got "
                         f"{control_variate!r}.")
    if control_variate == "neural" and cv_model is None:
        raise ValueError('control_variate="neural" needs cv_model (see init_control_variate).')
    x = float_array(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}.")
    x = check_finite(x, "x")
    h = _check_h(h)
    t = jnp.broadcast_to(jnp.asarray(t, dtype=x.dtype), x.shape[:1]) if jnp.ndim(t) == 0 \
        else jnp.asarray(t, dtype=x.dtype)
    if t.shape != x.shape[:1]:
        raise ValueError(f"t must be a scalar or have shape (n,) = ({x.shape[0]},), got "
                         f"{t.shape}.")
    t = check_time(t, sde.T, "t")
    # The target lives at t + h, which must not pass T.
    t1 = check_time(t + h, sde.T, "t + h")
    return x, t, t1, h


def euler_step(sde, x, t, h, z):
    r"""One Euler–Maruyama step of a batch: `(mu, x1, sd)` with $\mu = x + h f(x, t)$,
    $x_1 = \mu + \text{sd}\,z$ and $\text{sd} = g(t)\sqrt h$ (shapes `(n, d)`, `(n, d)`, `(n,)`)."""
    mu = x + h * jax.vmap(sde.drift)(x, t)
    sd = jax.vmap(sde.diffusion)(t) * jnp.sqrt(h)
    return mu, mu + sd[:, None] * z, sd


def _weight(sd, weighting):
    return sd**2 if weighting == "sigma2h" else jnp.ones_like(sd)


def ndsm_constant(sde, t, h, d: int, *, weighting: str = "sigma2h"):
    r"""$\lambda_k\,d/(\sigma_k^2 h)$ per time: what the controlled losses drop.

    `t` (scalar or `(n,)`) are the chain's times $t_k$. With `"sigma2h"` it is $d$."""
    if weighting not in NDSM_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {NDSM_WEIGHTINGS}, got {weighting!r}.")
    h = _check_h(h)
    t = check_time(t, sde.T, "t")
    sd2 = jax.vmap(sde.diffusion)(jnp.atleast_1d(t)) ** 2 * h
    out = _weight(jnp.sqrt(sd2), weighting) * d / sd2
    return out if jnp.ndim(t) else out[0]


def _per_sample(model, sde, x, t, t1, h, z, weighting, control_variate, cv_model, residual):
    mu, x1, sd = euler_step(sde, x, t, h, z)
    s1 = jax.vmap(model)(x1, t1)
    w = _weight(sd, weighting)
    if control_variate == "none":
        # (w / sd^2) |sd s + z|^2: no 1/sd^2 cancellation error at small h.
        return w / sd**2 * jnp.sum((sd[:, None] * s1 + z) ** 2, axis=-1)
    if control_variate == "plugin":
        c = jax.vmap(model)(mu, t1)
    else:
        r = jax.vmap(cv_model)(mu, t1)
        c = jax.vmap(model)(mu, t1) + r if residual else r
    cross = jnp.sum((s1 - c) * z, axis=-1)
    return w * (jnp.sum(s1**2, axis=-1) + 2.0 / sd * cross)


def ndsm_losses(model, sde, x, t, h, *, key: Key | None = None, z=None,
                weighting: str = "sigma2h", control_variate: str = "none", cv_model=None,
                residual: bool = True):
    r"""Per-sample NDSM losses of the step from $(x, t)$ to $t + h$, shape `(n,)`.

    **Arguments:**

    - `model`: the score model `(x, t) -> s` on one point.
    - `sde`: any `AbstractSDE` (its drift may be nonlinear).
    - `x`: chain states $X_k$, shape `(n, d)`; `t`: their times $t_k$, scalar or `(n,)`, with
      $t + h \le T$; `h`: the step, a scalar $> 0$ (may be traced).
    - `key` or `z`: the normals $Z_k$ of the step, drawn from `key` or given, shape `(n, d)`.
      (Keyword only, as all below.)
    - `weighting`: `"sigma2h"` or `"none"`.
    - `control_variate`: `"none"` (raw), `"plugin"` or `"neural"` (module docstring).
    - `cv_model`, `residual`: the network $r_\phi$ (or $c_\phi$) of the neural control variate.

    **Returns:** the per-sample losses; the controlled ones without `ndsm_constant`.

    **Raises:** `ValueError` for a non-positive `h`, a time outside $[0, T - h]$, mismatched
    shapes, NaN/inf in `x`, neither or both of `key` and `z`, an unknown weighting or control
    variate, or `"neural"` without `cv_model` (`EquinoxRuntimeError` under `jit` for values).
    """
    x, t, t1, h = _check_args(sde, x, t, h, weighting, control_variate, cv_model)
    if (key is None) == (z is None):
        raise ValueError("give exactly one of key and z.")
    z = jr.normal(key, x.shape, dtype=x.dtype) if z is None else jnp.asarray(z, dtype=x.dtype)
    if z.shape != x.shape:
        raise ValueError(f"z must have the shape of x, {x.shape}, got {z.shape}.")
    return _per_sample(model, sde, x, t, t1, h, z, weighting, control_variate, cv_model, residual)


def ndsm_loss(model, sde, x, t, h, *, key: Key | None = None, z=None,
              weighting: str = "sigma2h", control_variate: str = "none", cv_model=None,
              residual: bool = True):
    r"""The NDSM loss: the mean of `ndsm_losses` (same arguments), shape `()`."""
    return jnp.mean(ndsm_losses(model, sde, x, t, h, key=key, z=z, weighting=weighting,
                                control_variate=control_variate, cv_model=cv_model,
                                residual=residual))


def cv_objective(cv_model, model, sde, x, t, h, *, z, weighting: str = "sigma2h",
                 residual: bool = True):
    r"""What the neural control variate minimises: $\mathbb E\,\ell_{\text{NCV}}^2$, with the
    score model held fixed.

    Its mean does not depend on $\phi$ ($Z_k$ is independent of $\mu_k$), so this is the loss's
    variance plus a constant. `z` as in `ndsm_losses`; differentiate with respect to `cv_model`.
    """
    model = _frozen(model)
    losses = ndsm_losses(model, sde, x, t, h, z=z, weighting=weighting,
                         control_variate="neural", cv_model=cv_model, residual=residual)
    return jnp.mean(losses**2)


def init_control_variate(dim: int, *, key: Key, width: int = 64, depth: int = 2,
                         residual: bool = True):
    r"""A small `ScoreMLP` for the neural control variate.

    With `residual` (default) its last layer starts at zero, so the control variate starts as
    the plug-in one and training only moves it where that lowers the variance."""
    net = ScoreMLP(dim, width, depth, key=key)
    if not residual:
        return net
    last = net.mlp.layers[-1]
    return eqx.tree_at(lambda m: (m.mlp.layers[-1].weight, m.mlp.layers[-1].bias), net,
                       (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))

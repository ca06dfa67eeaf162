r"""A forward SDE whose drift carries structure: Langevin dynamics towards a fitted mixture.

$$dX = \tfrac12\beta(t)\,\nabla\log\rho(X)\,dt + \sqrt{\beta(t)}\,dW, \qquad
\rho = (1-\lambda)\,N(0, I) + \lambda\,\rho_{\text{ref}}^{(\kappa)},$$

where $\rho_{\text{ref}}$ is a Gaussian mixture fitted to the data (`fit_reference`, the paper's
"inexpensive preprocessing step") and $\rho_{\text{ref}}^{(\kappa)}$ the same mixture with every
covariance scaled by $\kappa^2$. Whatever $\beta(t)$ is, $\rho$ is invariant: this is Langevin
dynamics for $\rho$ on the clock $\int\beta/2$. So the forward marginal relaxes towards $\rho$,
not towards one Gaussian, and the reverse process starts from exact draws of $\rho$. With
$\lambda = 0$, or $\rho_{\text{ref}} = N(0, I)$ and $\kappa = 1$, the drift is $-\tfrac12\beta x$:
the VP SDE of tutorial 01.

The idea is from Birrell, Katsoulakis, Rey-Bellet, Zhang, Zhu, "Nonlinear denoising score
matching for enhanced learning of structured distributions" (2024). The drift's exact form,
the strength $\lambda$ and the width $\kappa$ are this package's reconstruction and teaching
devices (`shared/docs/papers/nonlinear-dsm.md` §2), not formulas read in the paper.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_finite, float_array, is_concrete, positive_int
from .._types import Key, Number, Scalar, Vector
from ..mixture import GaussianMixture
from ..sde import AbstractSDE, _beta_schedule, _check_positive_pair, _check_T


def _check_strength_width(strength, width):
    """Concrete values: `ValueError`; traced values: the checks live in the returned arrays."""
    if is_concrete(strength, width):
        lam, kappa = float(strength), float(width)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {lam:g}.")
        if not kappa > 0.0 or not np.isfinite(kappa):
            raise ValueError(f"width must be a finite number > 0, got {kappa:g}.")
        return strength, width
    strength = eqx.error_if(strength, ~((strength >= 0) & (strength <= 1)),
                            "strength must lie in [0, 1]")
    width = eqx.error_if(width, ~((width > 0) & jnp.isfinite(width)), "width must be > 0")
    return strength, width


class LangevinSDE(AbstractSDE):
    r"""$dX = \tfrac12\beta(t)\nabla\log\rho(X)\,dt + \sqrt{\beta(t)}\,dW$ on $[0, T]$.

    $\rho = (1-\lambda)N(0, I) + \lambda\,\rho_{\text{ref}}^{(\kappa)}$ (module docstring), with the
    linear schedule $\beta(t) = \beta_{\min} + (\beta_{\max} - \beta_{\min})t/T$. The prior at $T$
    is $\rho$ itself, sampled exactly. All numbers are stored as arrays, so a new `strength`,
    `width` or `beta_max` is the same compiled program (sliders never recompile).

    **Arguments:**

    - `reference`: a `GaussianMixture`, $\rho_{\text{ref}}$ (e.g. from `fit_reference`).
    - `beta_min`, `beta_max`: $0 < \beta_{\min} < \beta_{\max}$.
    - `strength`: $\lambda \in [0, 1]$, default 1 (keyword only, as below).
    - `width`: $\kappa > 0$, default 1: the reference's covariances are scaled by $\kappa^2$.
    - `T`: final time, default 1.

    **Raises:** `ValueError` for a strength outside $[0, 1]$, a non-positive width, betas out of
    order or non-positive, or a non-positive `T` (under `jit`, an `EquinoxRuntimeError` with the
    same message for strength and width); `TypeError` when `reference` is not a mixture.
    """

    reference: GaussianMixture
    beta_min: Scalar
    beta_max: Scalar
    strength: Scalar
    width: Scalar
    T: Scalar
    _rho: GaussianMixture

    def __init__(self, reference: GaussianMixture, beta_min: Number, beta_max: Number, *,
                 strength: Number = 1.0, width: Number = 1.0, T: Number = 1.0):
        if not isinstance(reference, GaussianMixture):
            raise TypeError(f"reference must be a GaussianMixture, got {type(reference).__name__}"
                            " (fit one with sg.nonlinear.fit_reference).")
        beta_min, beta_max, strength, width, T = (
            jnp.asarray(v, dtype=float) for v in (beta_min, beta_max, strength, width, T))
        _check_positive_pair(beta_min, beta_max, "beta_min", "beta_max")
        _check_T(T)
        strength, width = _check_strength_width(strength, width)
        self.reference = reference
        self.beta_min, self.beta_max, self.T = beta_min, beta_max, T
        self.strength, self.width = strength, width
        # rho is built once here, not at every drift call (its Cholesky factors and inverses
        # would otherwise be recomputed at every solver step).
        d = reference.dim
        weights = jnp.concatenate([(1.0 - strength)[None], strength * reference.weights])
        means = jnp.concatenate([jnp.zeros((1, d)), reference.means])
        covs = jnp.concatenate([jnp.eye(d)[None], width**2 * reference.covs])
        self._rho = GaussianMixture(weights, means, covs, validate=False)

    @property
    def dim(self) -> int:
        return self.reference.dim

    def rho(self) -> GaussianMixture:
        r"""The invariant law $\rho$ as a `GaussianMixture` (its first component is $N(0, I)$
        with weight $1 - \lambda$; a weight of 0 is allowed)."""
        return self._rho

    def beta(self, t):
        r"""The noise rate $\beta(t)$."""
        return _beta_schedule("linear", self.beta_min, self.beta_max, self.T, t)[0]

    def drift(self, x: Vector, t: Number) -> Vector:
        return 0.5 * self.beta(t) * self._rho.score(x)

    def diffusion(self, t: Number) -> Scalar:
        return jnp.sqrt(self.beta(t))

    def prior_sample(self, n: int, d: int, *, key: Key):
        r"""`n` exact draws of $\rho$, shape `(n, d)`; `d` must be the reference's dimension."""
        if d != self.dim:
            raise ValueError(f"d={d} but the reference lives in dimension {self.dim}.")
        return self._rho.sample(n, key=key)


class ReferenceScore(eqx.Module):
    r"""The score of a fixed mixture at every time: $(x, t) \mapsto \nabla\log\rho(x)$.

    The exact score of a `LangevinSDE` whose data are drawn from its own $\rho$ (then
    $p_t = \rho$ for all $t$), and a fixed smooth model for measuring the loss's variance.
    Called like a score network, so samplers and losses take it.
    """

    mixture: GaussianMixture

    @property
    def dim(self) -> int:
        return self.mixture.dim

    def __call__(self, x: Vector, t: Number) -> Vector:
        return self.mixture.score(x)


_COVARIANCE_TYPES = ("full", "diag", "spherical")


def fit_reference(data, k: int, *, key: Key, covariance_type: str = "full",
                  reg_covar: float = 1e-6, n_init: int = 3) -> GaussianMixture:
    r"""A `k`-component Gaussian mixture fitted to `data`: the reference $\rho_{\text{ref}}$.

    The paper's "inexpensive preprocessing step": k-means initialisation, then EM, by
    scikit-learn's `GaussianMixture` (a well-kept EM; nothing in the JAX stack does this
    better). `n_init` restarts guard against a poor k-means start.

    **Arguments:** `data` of shape `(n, d)` (integers are promoted to float), `k` components
    ($1 \le k \le n$), `key` (the seed of k-means and EM), `covariance_type` (`"full"`,
    `"diag"` or `"spherical"`; always returned as full matrices), `reg_covar` (added to every
    covariance's diagonal), `n_init`.

    **Returns:** a `GaussianMixture`.

    **Raises:** `ValueError` for `k < 1`, more components than points, data that is not
    `(n, d)` or holds NaN/inf, or an unknown covariance type.
    """
    from sklearn.mixture import GaussianMixture as SkMixture

    data = float_array(data, "data")
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (n, d) with n >= 1, got {data.shape}.")
    check_finite(data, "data")
    k = positive_int("k", k)
    if k > data.shape[0]:
        raise ValueError(f"k={k} components need at least k points, got {data.shape[0]}.")
    if covariance_type not in _COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {_COVARIANCE_TYPES}, got "
                         f"{covariance_type!r}.")
    seed = int(jr.randint(key, (), 0, 2**31 - 1))
    x = np.asarray(data, dtype=np.float64)
    fit = SkMixture(k, covariance_type=covariance_type, reg_covar=reg_covar, n_init=n_init,
                    random_state=seed).fit(x)
    d = x.shape[1]
    if covariance_type == "full":
        covs = fit.covariances_
    elif covariance_type == "diag":
        covs = np.einsum("ki,ij->kij", fit.covariances_, np.eye(d))
    else:
        covs = fit.covariances_[:, None, None] * np.eye(d)[None]
    weights = fit.weights_ / fit.weights_.sum()
    return GaussianMixture(jnp.asarray(weights, dtype=data.dtype),
                           jnp.asarray(fit.means_, dtype=data.dtype),
                           jnp.asarray(covs, dtype=data.dtype))


def euler_times(sde: AbstractSDE, steps: int):
    r"""The Euler grid $t_k = kh$, $k = 0, \dots, K$, $h = T/K$: shape `(steps + 1,)`."""
    steps = positive_int("steps", steps)
    return sde.T * jnp.arange(steps + 1) / steps


@eqx.filter_jit
def _euler_paths(sde, x0, steps, key):
    h = sde.T / steps
    zs = jr.normal(key, (steps,) + x0.shape, dtype=x0.dtype)

    def step(x, inp):
        k, z = inp
        t = k * h
        x = x + h * jax.vmap(sde.drift, in_axes=(0, None))(x, t) \
            + sde.diffusion(t) * jnp.sqrt(h) * z
        return x, x

    _, xs = jax.lax.scan(step, x0, (jnp.arange(steps), zs))
    return jnp.concatenate([x0[None], xs]), zs


def euler_paths(sde: AbstractSDE, x0, steps: int, *, key: Key):
    r"""Forward Euler–Maruyama paths of any `AbstractSDE` on $[0, T]$, with their normals.

    $X_{k+1} = X_k + h f(X_k, t_k) + g(t_k)\sqrt h\,Z_k$ on the grid of `euler_times`: the chain
    that nonlinear DSM treats as the noising process (its one-step transition is exactly
    Gaussian). For a linear SDE the chain's law differs from the SDE's by $O(h)$.

    **Arguments:** `sde`; `x0`, the starting points, shape `(n, d)`; `steps` $K \ge 1$; `key`.

    **Returns:** `(xs, zs)`: `xs` of shape `(steps + 1, n, d)` with `xs[0] = x0`, and the normals
    `zs` of shape `(steps, n, d)` that drove them.

    **Raises:** `ValueError` for `x0` not of shape `(n, d)`, NaN/inf in it, or `steps < 1`;
    `TypeError` when `sde` is not an `AbstractSDE`.
    """
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}.")
    x0 = float_array(x0, "x0")
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (n, d), got {x0.shape}.")
    dim = getattr(sde, "dim", None)
    if dim is not None and x0.shape[1] != dim:
        raise ValueError(f"x0 has dimension d={x0.shape[1]} but the SDE acts on d={dim}.")
    x0 = check_finite(x0, "x0")
    return _euler_paths(sde, x0, positive_int("steps", steps), key)

r"""Heavy-tailed targets with exact densities, scores and tail functions.

- `StudentT`: the isotropic multivariate Student-t, $\nu$ degrees of freedom, scale $s$:
  $|X| > r$ with probability $\asymp r^{-\nu}$, so moments of order $k$ exist iff $k < \nu$
  ($\nu = 1$: the Cauchy, no mean).
- `HeavyTailSubmanifold`: a few heavy coordinates embedded in a higher dimension, the
  construction of the heavy-tail paper's 110-D experiment (addendum B §4.1 item 2): coordinate
  $i$ is $z_i = \mathrm{sign}(y_i)|y_i|^{t_i}$ with $y_i$ standard Cauchy, so its tail index is
  $1/t_i$, and the remaining coordinates are exactly 0.

Both follow the core's sampling protocol, `sample(n, *, key) -> (n, d)`, so `sg.mc_floor` and
the metrics take them as targets.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.scipy.special import betainc, gammaln
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dim, float_array, is_concrete, positive_int
from .._types import Key, Number


def _positive_value(name, v, dtype):
    v = jnp.asarray(v, dtype)
    if v.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {v.shape}.")
    if is_concrete(v):
        if not (np.isfinite(float(v)) and float(v) > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {float(v)!r}.")
        return v
    return eqx.error_if(v, ~(jnp.isfinite(v) & (v > 0)), f"{name} must be > 0")


class StudentT(eqx.Module):
    r"""The isotropic Student-t on $\mathbb{R}^d$: $X = s\,Z/\sqrt{G}$, $Z \sim N(0, I_d)$,
    $G \sim \chi^2_\nu/\nu$.

    $$p(x) = \frac{\Gamma(\frac{\nu + d}2)}{\Gamma(\frac\nu2)(\nu\pi)^{d/2}s^d}
    \Big(1 + \frac{|x|^2}{\nu s^2}\Big)^{-\frac{\nu + d}2},\qquad
    \nabla\log p(x) = -\frac{(\nu + d)\,x}{\nu s^2 + |x|^2}.$$

    The density decays like $|x|^{-(\nu + d)}$ (the heavy-tail notes' $\beta = d + \nu$, as the
    authors' notebooks write `beta = df + d`). $|X|^2/(d s^2)$ is $F(d, \nu)$-distributed, so
    the radial survival function is a regularised incomplete beta function,
    $P(|X| > r) = I_{\nu s^2/(\nu s^2 + r^2)}(\nu/2, d/2)$, which for $d = 2$ is the
    heavy-tail notes' $(1 + r^2/\nu s^2)^{-\nu/2}$.

    **Arguments:** `nu` $\nu > 0$ and `scale` $s > 0$ (traced values: a slider moves them
    without recompiling), `dim` $d$ (static).

    **Raises:** `ValueError` for $\nu \le 0$, $s \le 0$ (also under `jit`, by `eqx.error_if`)
    or a `dim` that is not a positive integer.
    """

    nu: Float[Array, ""]
    scale: Float[Array, ""]
    dim: int = eqx.field(static=True)

    def __init__(self, nu: Number, dim: int, scale: Number = 1.0):
        self.dim = positive_int("dim", dim)
        dt = jnp.result_type(float)
        self.nu = _positive_value("nu", nu, dt)
        self.scale = _positive_value("scale", scale, dt)

    def _x(self, x):
        x = float_array(x, "x")
        check_dim(x, self.dim, "x")
        return x

    def log_prob(self, x: Float[ArrayLike, "*batch d"]) -> Float[Array, "*batch"]:
        """The exact log-density at `x` `(..., d)`."""
        x = self._x(x)
        nu, s, d = self.nu.astype(x.dtype), self.scale.astype(x.dtype), self.dim
        norm = (gammaln((nu + d) / 2) - gammaln(nu / 2) - d / 2 * jnp.log(nu * jnp.pi)
                - d * jnp.log(s))
        return norm - (nu + d) / 2 * jnp.log1p(jnp.sum(x**2, axis=-1) / (nu * s**2))

    def score(self, x: Float[ArrayLike, "*batch d"]) -> Float[Array, "*batch d"]:
        """The exact score $\\nabla\\log p(x)$ at `x` `(..., d)`."""
        x = self._x(x)
        nu, s = self.nu.astype(x.dtype), self.scale.astype(x.dtype)
        return -(nu + self.dim) * x / (nu * s**2 + jnp.sum(x**2, axis=-1, keepdims=True))

    def sample(self, n: int, *, key: Key) -> Float[Array, "n d"]:
        r"""`n` draws, `(n, d)`. $\log G$ is drawn directly (`jax.random.loggamma`), so a tiny
        $G$ (a far-tail draw at small $\nu$) does not underflow to a division by zero."""
        n = positive_int("n", n)
        zk, gk = jr.split(key)
        dt = self.nu.dtype
        z = jr.normal(zk, (n, self.dim), dt)
        log_g = jr.loggamma(gk, self.nu / 2, (n, 1), dt) + jnp.log(2 / self.nu)
        return self.scale * z * jnp.exp(-log_g / 2)

    @property
    def tail_index(self) -> Float[Array, ""]:
        r"""$\nu$: $P(|X| > r) \asymp r^{-\nu}$."""
        return self.nu

    def radial_ccdf(self, r: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        r"""$P(|X| > r)$, exactly, for `r` $\ge 0$ (any shape). Compiled once per shape (the
        tail metrics call it in bisection loops)."""
        return _radial_ccdf(self, float_array(r, "r"))


@eqx.filter_jit
def _radial_ccdf(t: StudentT, r):
    nu, s = t.nu.astype(r.dtype), t.scale.astype(r.dtype)
    u = nu * s**2 / (nu * s**2 + r**2)
    return jnp.where(r > 0, betainc(nu / 2, t.dim / 2, u), 1.0)


#: The tail exponents $t_i$ of the authors' 110-D experiment (`Heavytail_submanifold.ipynb`,
#: drawn from $U[0.5, 2]$ with seed 100; addendum B §4.1 item 2).
AUTHORS_EXPONENTS = (1.315, 0.918, 1.137, 1.767, 0.507, 0.682, 1.506, 1.739, 0.705, 1.363)


class HeavyTailSubmanifold(eqx.Module):
    r"""Heavy coordinates on a $k$-dimensional coordinate plane of $\mathbb{R}^d$.

    $x = (z_1, \dots, z_k, 0, \dots, 0)$ with $z_i = \mathrm{sign}(y_i)|y_i|^{t_i}$, $y_i$
    independent standard Cauchy. Exactly (addendum B §4.3, derived from the Cauchy CDF):
    $P(|z_i| > r) = 1 - \frac2\pi\arctan(r^{1/t_i})$, tail index $1/t_i$; the $d - k$
    orthogonal coordinates are 0, and a generated law is judged by how far it leaves them
    (`orthogonal_distance`). `HeavyTailSubmanifold(AUTHORS_EXPONENTS, 110)` is the paper's
    target; the tutorials scale it down.

    **Arguments:** `exponents` $t_i > 0$, shape `(k,)`; `dim` $d \ge k$.
    """

    exponents: Float[Array, " k"]
    dim: int = eqx.field(static=True)

    def __init__(self, exponents: Float[ArrayLike, " k"], dim: int):
        t = jnp.atleast_1d(float_array(exponents, "exponents"))
        if t.ndim != 1:
            raise ValueError(f"exponents must be a vector (k,), got shape {t.shape}.")
        if is_concrete(t) and not bool(jnp.all(jnp.isfinite(t) & (t > 0))):
            raise ValueError(f"exponents must be finite and > 0, got {t}.")
        self.dim = positive_int("dim", dim)
        if self.dim < t.shape[0]:
            raise ValueError(f"dim must be at least the number of heavy coordinates "
                             f"{t.shape[0]}, got {dim}.")
        self.exponents = t

    @property
    def manifold_dim(self) -> int:
        return self.exponents.shape[0]

    @property
    def tail_indices(self) -> Float[Array, " k"]:
        return 1 / self.exponents

    def sample(self, n: int, *, key: Key) -> Float[Array, "n d"]:
        """`n` draws, `(n, d)`: the heavy coordinates first, then zeros."""
        n = positive_int("n", n)
        y = jr.cauchy(key, (n, self.manifold_dim), self.exponents.dtype)
        z = jnp.sign(y) * jnp.abs(y) ** self.exponents[None]
        return jnp.concatenate([z, jnp.zeros((n, self.dim - self.manifold_dim), z.dtype)], -1)

    def coordinate_ccdf(self, r: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape k"]:
        r"""$P(|z_i| > r)$ for each heavy coordinate, shape `r.shape + (k,)`."""
        r = float_array(r, "r")[..., None]
        t = self.exponents.reshape((1,) * (r.ndim - 1) + (-1,))
        # 1 - (2/pi) arctan(u) = (2/pi) arctan(1/u): no cancellation in the far tail.
        return 2 / jnp.pi * jnp.arctan(jnp.maximum(r, 0) ** (-1 / t))

    def orthogonal_distance(self, samples: Float[ArrayLike, "n d"]) -> float:
        """The mean norm of the orthogonal coordinates of `samples` (the authors' "orthogonal
        distance"; 0 for the target itself)."""
        x = float_array(samples, "samples")
        check_dim(x, self.dim, "samples")
        return float(jnp.mean(jnp.linalg.norm(x[:, self.manifold_dim:], axis=-1)))


r"""Gaussian mixtures: targets with an exact score at every diffusion time.

If $X_0 \sim \sum_k w_k N(\mu_k, \Sigma_k)$ and $X_t \mid X_0 \sim N(m_t X_0, s_t^2 I)$ (any
linear SDE of `sgmteach.sde`), then $X_t \sim \sum_k w_k N(m_t\mu_k, m_t^2\Sigma_k + s_t^2 I)$.
So `log_prob`, `score` and samples of every marginal $p_t$ are exact: the yardstick against which
tutorials hold learned scores and samplers.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._checks import check_finite, check_time, is_concrete, positive_int
from ._types import Key, Scalar
from .sde import AbstractLinearSDE, check_linear


def _check_values(weights, means, covs):
    weights = check_finite(weights, "weights")
    means = check_finite(means, "means")
    covs = check_finite(covs, "covs")
    if is_concrete(weights, covs):
        w = np.asarray(weights)
        if (w < 0).any():
            raise ValueError(f"weights must be non-negative, got {w}.")
        if abs(w.sum() - 1.0) > 1e-5:
            raise ValueError(f"weights must sum to one, got sum {w.sum():.6g}.")
        c = np.asarray(covs, dtype=np.float64)
        if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-5, atol=1e-6):
            raise ValueError("covs must be symmetric.")
        if (np.linalg.eigvalsh(c) <= 0).any():
            raise ValueError("covs must be positive definite (an eigenvalue is <= 0).")
    return weights, means, covs


class GaussianMixture(eqx.Module):
    r"""A mixture $p(x) = \sum_{k} w_k N(x; \mu_k, \Sigma_k)$ in $\mathbb{R}^d$.

    **Arguments:**

    - `weights`: shape `(k,)`, non-negative, summing to one.
    - `means`: shape `(k, d)`.
    - `covs`: shape `(k, d, d)`, symmetric positive definite.
    - `validate`: keyword only; `False` skips the value checks below, for arrays that are valid
      by construction (`diffuse` uses it: it runs inside every exact-score call).

    **Raises:** `ValueError` for mismatched shapes or NaN/inf in any argument (under `jit` an
    `EquinoxRuntimeError` with the same message), and, for concrete arguments only, weights
    that are negative or do not sum to one or a covariance that is not symmetric positive
    definite (these need the values on the host; a traced mixture, built inside `jit`, skips
    them).
    """

    weights: jax.Array
    means: jax.Array
    covs: jax.Array
    chol: jax.Array  # (k, d, d) lower Cholesky factors of covs
    precs: jax.Array  # (k, d, d) inverses of covs
    logdets: jax.Array  # (k,) log det covs

    def __init__(self, weights, means, covs, *, validate: bool = True):
        weights, means, covs = (jnp.asarray(a, dtype=float) for a in (weights, means, covs))
        if weights.ndim != 1:
            raise ValueError(f"weights must have shape (k,), got {weights.shape}.")
        k = weights.shape[0]
        if k == 0:
            raise ValueError("a mixture needs at least one component (weights is empty).")
        if means.ndim != 2 or means.shape[0] != k:
            raise ValueError(f"means must have shape (k, d) with k={k}, got {means.shape}.")
        d = means.shape[1]
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape (k, d, d) = {(k, d, d)}, got {covs.shape}.")
        if validate:
            weights, means, covs = _check_values(weights, means, covs)
        self.weights, self.means, self.covs = weights, means, covs
        self.chol = jnp.linalg.cholesky(covs)
        self.precs = jnp.linalg.inv(covs)
        self.logdets = 2.0 * jnp.sum(jnp.log(jnp.diagonal(self.chol, axis1=-2, axis2=-1)), -1)

    @classmethod
    def isotropic(cls, weights, means, std):
        r"""Mixture with covariances $\sigma^2 I$ (`std` a scalar or one per component)."""
        means = jnp.asarray(means, dtype=float)
        k, d = means.shape
        std = jnp.broadcast_to(jnp.asarray(std, dtype=float), (k,))
        if is_concrete(std) and (np.asarray(std) <= 0).any():
            raise ValueError(f"std must be > 0, got {np.asarray(std)}.")
        return cls(weights, means, std[:, None, None] ** 2 * jnp.eye(d)[None])

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def mean(self):
        """Mixture mean, shape `(d,)`."""
        return self.weights @ self.means

    def cov(self):
        """Mixture covariance, shape `(d, d)`."""
        mu = self.mean()
        dm = self.means - mu[None]
        return jnp.einsum("k,kij->ij", self.weights, self.covs) + jnp.einsum(
            "k,ki,kj->ij", self.weights, dm, dm
        )

    def sample(self, n: int, *, key: Key):
        """`n` independent draws, shape `(n, d)`."""
        ck, zk = jr.split(key)
        comp = jr.categorical(ck, jnp.log(self.weights), shape=(n,))
        z = jr.normal(zk, (n, self.dim))
        return self.means[comp] + jnp.einsum("nij,nj->ni", self.chol[comp], z)

    def _component_logps(self, x):
        # log w_k + log N(x; mu_k, Sigma_k), shape (..., k); leading axes broadcast explicitly.
        lead = (1,) * (jnp.ndim(x) - 1)
        diff = x[..., None, :] - self.means.reshape(lead + self.means.shape)  # (..., k, d)
        pdiff = jnp.einsum("kij,...kj->...ki", self.precs, diff)  # Sigma_k^{-1}(x - mu_k)
        quad = jnp.sum(diff * pdiff, axis=-1)  # (..., k)
        const = jnp.log(self.weights) - 0.5 * (self.logdets + self.dim * jnp.log(2 * jnp.pi))
        return const.reshape(lead + const.shape) - 0.5 * quad, pdiff

    def _check_x(self, x):
        if jnp.shape(x)[-1:] != (self.dim,):
            raise ValueError(f"x must have last axis d={self.dim}, got shape {jnp.shape(x)}.")

    def log_prob(self, x):
        """Log density at `x`, shape `(..., d) -> (...)`."""
        self._check_x(x)
        logps, _ = self._component_logps(x)
        return jax.nn.logsumexp(logps, axis=-1)

    def responsibilities(self, x):
        r"""Posterior component probabilities $p(k \mid x)$, shape `(..., d) -> (..., k)`."""
        self._check_x(x)
        logps, _ = self._component_logps(x)
        return jax.nn.softmax(logps, axis=-1)

    def score(self, x):
        r"""Exact score $\nabla_x \log p(x) = -\sum_k p(k\mid x)\,\Sigma_k^{-1}(x - \mu_k)$."""
        self._check_x(x)
        logps, pdiff = self._component_logps(x)
        r = jax.nn.softmax(logps, axis=-1)  # (..., k)
        return -jnp.sum(r[..., None] * pdiff, axis=-2)

    def diffuse(self, sde, t) -> "GaussianMixture":
        r"""The exact law of $X_t$ when $X_0$ follows this mixture: a `GaussianMixture`.

        **Arguments:** `sde`, an `AbstractLinearSDE`; `t`, a time in $[0, T]$ (may be traced).

        **Raises:** `ValueError` when `t` lies outside $[0, T]$ (`EquinoxRuntimeError` under
        `jit`); `TypeError` for an SDE without closed-form marginals.
        """
        check_linear(sde, "GaussianMixture.diffuse")
        t = check_time(t, sde.T)
        m, s = sde.marginal_mean_std(t)
        covs = m**2 * self.covs + s**2 * jnp.eye(self.dim)[None]
        # Valid by construction (m^2 Sigma + s^2 I is PD): skip the host-side checks, which
        # would otherwise run on every eager call of ExactScore.
        return GaussianMixture(self.weights, m * self.means, covs, validate=False)


class ExactScore(eqx.Module):
    r"""The exact score $(x, t) \mapsto \nabla \log p_t(x)$ of a mixture pushed through an SDE.

    A callable module with the same signature as a learned score model, so samplers, losses
    and widgets take either. `x` may carry leading batch axes.

    **Arguments:** `target`, a `GaussianMixture`; `sde`, an `AbstractLinearSDE`.
    """

    target: GaussianMixture
    sde: AbstractLinearSDE

    def __check_init__(self):
        check_linear(self.sde, "ExactScore")

    def __call__(self, x, t: Scalar):
        return self.target.diffuse(self.sde, t).score(x)


def _uniform(k: int):
    return jnp.full((k,), 1.0 / k)


def _pad(means2d, dim: int):
    means2d = jnp.asarray(means2d, dtype=float)
    if dim < 2:
        raise ValueError(f"dim must be >= 2 for a planar target, got {dim}.")
    return jnp.pad(means2d, ((0, 0), (0, dim - 2)))


def _check_count(name: str, k: int, minimum: int = 1):
    positive_int(name, k, minimum)


def ring(k: int = 8, radius: float = 4.0, std: float = 0.3, *, dim: int = 2, phase: float = 0.0):
    r"""`k` equal Gaussians of standard deviation `std` on a circle of `radius`.

    Invariant under the rotations by $2\pi/k$ (the cyclic group $C_k$). With `dim > 2` the
    circle lies in the first two coordinates; the components stay isotropic, so the other
    coordinates carry noise of the same `std` (a thin slab, not a set of lower dimension: for
    data on a 2-D plane, zero-pad 2-D samples instead).
    """
    _check_count("k", k)
    angles = phase + 2 * jnp.pi * jnp.arange(k) / k
    means = radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    return GaussianMixture.isotropic(_uniform(k), _pad(means, dim), std)


def grid(n: int = 3, spacing: float = 2.0, std: float = 0.2, *, dim: int = 2):
    """`n x n` equal Gaussians on a square grid centred at the origin."""
    _check_count("n", n)
    c = spacing * (jnp.arange(n) - (n - 1) / 2)
    means = jnp.stack(jnp.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    return GaussianMixture.isotropic(_uniform(n * n), _pad(means, dim), std)


def two_moons(k: int = 8, std: float = 0.15, *, scale: float = 2.0, dim: int = 2):
    """Two interleaved half circles, each traced by `k` Gaussians (a mixture 'two moons')."""
    _check_count("k", k, 2)
    a = jnp.pi * jnp.arange(k) / (k - 1)
    upper = jnp.stack([jnp.cos(a), jnp.sin(a)], -1)
    lower = jnp.stack([1 - jnp.cos(a), 0.5 - jnp.sin(a)], -1)
    means = scale * (jnp.concatenate([upper, lower]) - jnp.array([[0.5, 0.25]]))
    return GaussianMixture.isotropic(_uniform(2 * k), _pad(means, dim), std)


def spiral(k: int = 16, turns: float = 1.5, std: float = 0.2, *, scale: float = 4.0, dim: int = 2):
    """`k` Gaussians along an Archimedean spiral of `turns` turns reaching radius `scale`."""
    _check_count("k", k, 2)
    u = jnp.linspace(0.15, 1.0, k)
    a = 2 * jnp.pi * turns * u
    means = scale * u[:, None] * jnp.stack([jnp.cos(a), jnp.sin(a)], -1)
    return GaussianMixture.isotropic(_uniform(k), _pad(means, dim), std)


def gaussian(mean, cov):
    """A single Gaussian $N(\\mu, \\Sigma)$ as a one-component mixture."""
    mean = jnp.atleast_1d(jnp.asarray(mean, dtype=float))
    return GaussianMixture(jnp.ones(1), mean[None], jnp.asarray(cov, dtype=float)[None])
